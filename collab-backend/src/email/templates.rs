//! The email templates (minijinja, embedded in the binary from `templates/email/`): per
//! notification kind a text part (`<kind>.txt`) and an HTML part (`<kind>.html`, which
//! extends `layout.html`, auto-escaped), a digest pair, and subject lines per locale
//! (`en`, `zh-CN`) below. Every part carries the unsubscribe link.

use std::sync::LazyLock;

use minijinja::{Environment, context};
use serde::Serialize;

use crate::notifications::KINDS;

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// The subject line.
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part.
    pub html: String,
}

/// What one notification says, ready for a template.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Item {
    /// The notification kind.
    pub kind: String,
    /// Who caused it (display name).
    pub actor: String,
    /// The task's title.
    pub task: String,
    /// The start of the comment or task text, for mentions and comments.
    pub excerpt: String,
    /// Status before and after (`task.status_changed`).
    pub from: String,
    /// Status after.
    pub to: String,
    /// The file's name (`file.shared`).
    pub file: String,
    /// When the task is due (`task.due_soon`).
    pub due: String,
    /// Absolute URL of the resource.
    pub link: String,
}

/// What a single notification's templates see.
#[derive(Serialize)]
struct OneContext<'a> {
    locale: &'a str,
    zh: bool,
    subject: &'a str,
    unsubscribe_url: &'a str,
    #[serde(flatten)]
    item: &'a Item,
}

const FILES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../../templates/email/layout.html"),
    ),
    (
        "footer.txt",
        include_str!("../../templates/email/footer.txt"),
    ),
    (
        "digest.txt",
        include_str!("../../templates/email/digest.txt"),
    ),
    (
        "digest.html",
        include_str!("../../templates/email/digest.html"),
    ),
    (
        "mention.txt",
        include_str!("../../templates/email/mention.txt"),
    ),
    (
        "mention.html",
        include_str!("../../templates/email/mention.html"),
    ),
    (
        "task.assigned.txt",
        include_str!("../../templates/email/task.assigned.txt"),
    ),
    (
        "task.assigned.html",
        include_str!("../../templates/email/task.assigned.html"),
    ),
    (
        "task.status_changed.txt",
        include_str!("../../templates/email/task.status_changed.txt"),
    ),
    (
        "task.status_changed.html",
        include_str!("../../templates/email/task.status_changed.html"),
    ),
    (
        "task.commented.txt",
        include_str!("../../templates/email/task.commented.txt"),
    ),
    (
        "task.commented.html",
        include_str!("../../templates/email/task.commented.html"),
    ),
    (
        "file.shared.txt",
        include_str!("../../templates/email/file.shared.txt"),
    ),
    (
        "file.shared.html",
        include_str!("../../templates/email/file.shared.html"),
    ),
    (
        "task.due_soon.txt",
        include_str!("../../templates/email/task.due_soon.txt"),
    ),
    (
        "task.due_soon.html",
        include_str!("../../templates/email/task.due_soon.html"),
    ),
];

/// Subject lines: `(kind, English, Simplified Chinese)`; `digest.hourly` and
/// `digest.daily` for digests.
const SUBJECTS: &[(&str, &str, &str)] = &[
    (
        "mention",
        "{{ actor }} mentioned you in “{{ task }}”",
        "{{ actor }} 在「{{ task }}」中提到了你",
    ),
    (
        "task.assigned",
        "{{ actor }} assigned you “{{ task }}”",
        "{{ actor }} 给你分配了任务「{{ task }}」",
    ),
    (
        "task.status_changed",
        "“{{ task }}” is now {{ to }}",
        "任务「{{ task }}」的状态已变为 {{ to }}",
    ),
    (
        "task.commented",
        "{{ actor }} commented on “{{ task }}”",
        "{{ actor }} 评论了任务「{{ task }}」",
    ),
    (
        "file.shared",
        "{{ actor }} shared “{{ file }}” with you",
        "{{ actor }} 与你共享了文件「{{ file }}」",
    ),
    (
        "task.due_soon",
        "“{{ task }}” is due {{ due }}",
        "任务「{{ task }}」将于 {{ due }} 到期",
    ),
    (
        "digest.hourly",
        "Your hourly digest: {{ count }} notification{{ 's' if count != 1 }}",
        "每小时摘要：{{ count }} 条新通知",
    ),
    (
        "digest.daily",
        "Your daily digest: {{ count }} notification{{ 's' if count != 1 }}",
        "每日摘要：{{ count }} 条新通知",
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    env.add_filter("href", href);
    for (name, source) in FILES {
        if let Err(e) = env.add_template(name, source) {
            // Checked by the unit test below; a broken template never ships.
            tracing::error!(template = name, error = %e, "email template does not parse");
        }
    }
    for (kind, en, zh) in SUBJECTS {
        for (locale, source) in [("en", en), ("zh-CN", zh)] {
            let name: &'static str = Box::leak(format!("subject.{kind}.{locale}").into_boxed_str());
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "email subject does not parse");
            }
        }
    }
    env
});

/// `{{ url|href }}` in HTML: a URL escaped for an attribute value (`&`, `<`, `>`, quotes),
/// without the default escaper's `/` → `&#x2f;`, so links stay readable.
fn href(url: &str) -> minijinja::Value {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    minijinja::Value::from_safe_string(out)
}

fn locale_of(locale: &str) -> &'static str {
    if locale == "zh-CN" { "zh-CN" } else { "en" }
}

/// The subject of one notification: its kind's line in `locale`.
pub fn headline(locale: &str, item: &Item) -> Result<String, minijinja::Error> {
    let locale = locale_of(locale);
    ENV.get_template(&format!("subject.{}.{locale}", item.kind))?
        .render(item)
}

/// The email of one notification.
///
/// # Errors
/// An unknown kind (no template) or a template failure.
pub fn render_one(
    locale: &str,
    item: &Item,
    unsubscribe_url: &str,
) -> Result<Rendered, minijinja::Error> {
    let locale = locale_of(locale);
    let subject = headline(locale, item)?;
    let ctx = OneContext {
        locale,
        zh: locale == "zh-CN",
        subject: &subject,
        unsubscribe_url,
        item,
    };
    Ok(Rendered {
        text: ENV
            .get_template(&format!("{}.txt", item.kind))?
            .render(&ctx)?,
        html: ENV
            .get_template(&format!("{}.html", item.kind))?
            .render(&ctx)?,
        subject,
    })
}

/// One digest email merging `items` (`mode` `hourly` or `daily`).
///
/// # Errors
/// A template failure.
pub fn render_digest(
    locale: &str,
    mode: &str,
    items: &[Item],
    unsubscribe_url: &str,
) -> Result<Rendered, minijinja::Error> {
    let locale = locale_of(locale);
    let mode = if mode == "daily" { "daily" } else { "hourly" };
    let lines = items
        .iter()
        .map(|item| {
            let headline = headline(locale, item)?;
            Ok::<_, minijinja::Error>(context! { headline, link => &item.link })
        })
        .collect::<Result<Vec<_>, minijinja::Error>>()?;
    let count = items.len();
    let subject = ENV
        .get_template(&format!("subject.digest.{mode}.{locale}"))?
        .render(context! { count })?;
    let ctx = context! {
        locale, zh => locale == "zh-CN", subject => &subject, unsubscribe_url,
        mode, count, items => lines,
    };
    Ok(Rendered {
        text: ENV.get_template("digest.txt")?.render(&ctx)?,
        html: ENV.get_template("digest.html")?.render(&ctx)?,
        subject,
    })
}

/// Sample data for the preview of `kind` (a notification kind or `digest`).
pub fn sample(kind: &str, base: &str) -> Option<Vec<Item>> {
    let one = |kind: &str| Item {
        kind: kind.to_owned(),
        actor: "Mia Chen".to_owned(),
        task: "Ship the Q3 report".to_owned(),
        excerpt: "@gus could you check the numbers <before> Friday?".to_owned(),
        from: "todo".to_owned(),
        to: "done".to_owned(),
        file: "q3-report.pdf".to_owned(),
        due: "2025-07-01".to_owned(),
        link: format!("{base}/api/v1/tasks/00000000-0000-7000-8000-000000000000"),
    };
    if kind == "digest" {
        return Some(
            ["mention", "task.assigned", "task.commented"]
                .map(one)
                .to_vec(),
        );
    }
    KINDS.contains(&kind).then(|| vec![one(kind)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders_in_every_locale() -> Result<(), minijinja::Error> {
        for locale in ["en", "zh-CN"] {
            for kind in KINDS.iter().chain(&["digest"]) {
                let items = sample(kind, "https://x.test").unwrap_or_default();
                let r = if *kind == "digest" {
                    render_digest(locale, "daily", &items, "https://x.test/u")?
                } else {
                    render_one(locale, &items[0], "https://x.test/u")?
                };
                assert!(!r.subject.is_empty() && !r.subject.contains('\n'), "{kind}");
                assert!(r.text.contains("https://x.test/u"), "{kind} {locale}");
                assert!(r.html.contains("href=\"https://x.test/u\""), "{kind}");
                assert!(!r.html.contains("<before>"), "HTML is escaped: {kind}");
            }
        }
        let zh = render_one("zh-CN", &sample("mention", "b").unwrap_or_default()[0], "u")?;
        assert_eq!(zh.subject, "Mia Chen 在「Ship the Q3 report」中提到了你");
        Ok(())
    }
}
