use proptest::prelude::*;

use super::parse;

#[test]
fn finds_handles() {
    assert_eq!(parse("hi @alice and @Bob."), ["alice", "bob"]);
    assert_eq!(parse("@alice"), ["alice"]);
    assert_eq!(parse("(@team-web) @all, @x_y"), ["team-web", "all", "x_y"]);
    assert_eq!(parse("@alice @alice @ALICE"), ["alice"]);
    assert_eq!(parse("ends with @carol-"), ["carol"]);
}

#[test]
fn ignores_emails_code_and_bare_ats() {
    assert!(parse("mail bob@example.com").is_empty());
    assert!(parse("a @ b, @@, @").is_empty());
    assert!(parse("`@alice` and ```\n@bob\n```").is_empty());
    assert_eq!(parse("`@alice` then @carol"), ["carol"]);
    assert_eq!(parse("unclosed ` @dave"), ["dave"]);
    assert!(parse("x@y@z").is_empty());
    assert!(parse(&format!("@{}", "a".repeat(65))).is_empty());
}

proptest! {
    #[test]
    fn never_panics_and_handles_are_clean(text in "\\PC{0,200}") {
        for handle in parse(&text) {
            prop_assert!(!handle.is_empty() && handle.len() <= super::MAX_HANDLE_LEN);
            prop_assert!(handle.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c)));
        }
    }

    #[test]
    fn a_handle_between_spaces_is_found(name in "[a-z][a-z0-9_]{0,20}", before in "[ a-z]{0,10}") {
        let text = format!("{before} @{name} done");
        prop_assert!(parse(&text).contains(&name));
    }

    #[test]
    fn inside_backticks_nothing_is_found(name in "[a-z]{1,10}") {
        let text = format!("`@{name}`");
        prop_assert!(parse(&text).is_empty());
    }
}
