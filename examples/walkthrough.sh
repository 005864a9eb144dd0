#!/usr/bin/env bash
# The collaboration API end to end, through the gateway: an organization, a team, a
# workspace, a task, a comment that mentions a teammate, and a file with two versions.
# Needs only bash and curl. Start AI Stack first (`./aistack up`), then:
#
#   examples/walkthrough.sh                      # against http://127.0.0.1:8080
#   AISTACK_URL=http://host:port examples/walkthrough.sh
#
# Every run makes its own organization and users (names carry a run suffix), so it can
# be run again against the same data. See examples/WALKTHROUGH.md.
set -euo pipefail

API="${AISTACK_URL:-http://127.0.0.1:8080}/api/v1"
RUN="${WALKTHROUGH_RUN:-$(date +%s)-$$}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# call METHOD PATH [curl args…]: prints the body; fails on a status >= 400.
call() {
    local method="$1" path="$2"
    shift 2
    local status
    status=$(curl -sS -o "$WORK/body" -w '%{http_code}' -X "$method" "$API$path" "$@")
    if [ "$status" -ge 400 ]; then
        echo "error: $method $path answered $status: $(cat "$WORK/body")" >&2
        exit 1
    fi
    cat "$WORK/body"
}

# json METHOD PATH TOKEN BODY
json() {
    local auth=()
    [ -n "$3" ] && auth=(-H "Authorization: Bearer $3")
    call "$1" "$2" "${auth[@]}" -H 'Content-Type: application/json' --data "$4"
}

# field NAME: the first string value of "NAME" in the JSON on stdin.
field() {
    grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d '"' -f 4
}

echo "== 1. an organization and its owner"
ORG=$(json POST /organizations "" "{\"name\":\"Acme $RUN\",\"slug\":\"acme-$RUN\"}" | field id)
json POST /auth/register "" \
    "{\"organization_id\":\"$ORG\",\"username\":\"ada-$RUN\",\"password\":\"correct horse\"}" >/dev/null
ADA=$(json POST /auth/sign-in "" "{\"username\":\"ada-$RUN\",\"password\":\"correct horse\"}" | field token)
echo "organization $ORG, owner ada-$RUN signed in"

echo "== 2. a team, a teammate, a workspace"
TEAM=$(json POST "/organizations/$ORG/teams" "$ADA" '{"name":"Platform"}' | field id)
MIA_ID=$(json POST "/organizations/$ORG/users" "$ADA" \
    "{\"username\":\"mia-$RUN\",\"password\":\"battery staple\"}" | field id)
json POST /grants "$ADA" \
    "{\"user_id\":\"$MIA_ID\",\"role\":\"member\",\"scope_kind\":\"team\",\"scope_id\":\"$TEAM\"}" >/dev/null
WS=$(json POST "/teams/$TEAM/workspaces" "$ADA" '{"name":"Launch"}' | field id)
echo "team $TEAM (mia-$RUN is a member), workspace $WS"

echo "== 3. a task"
TASK=$(json POST "/workspaces/$WS/tasks" "$ADA" '{"title":"Write the launch plan","priority":"high"}' | field id)
echo "task $TASK"

echo "== 4. a comment that mentions mia"
COMMENT=$(json POST "/tasks/$TASK/comments" "$ADA" "{\"body\":\"@mia-$RUN can you review the plan?\"}" | field id)
echo "comment $COMMENT"

echo "== 5. a file, then a second version of it"
printf 'Launch plan, draft 1\n' >"$WORK/plan-v1.txt"
printf 'Launch plan, draft 2: dates fixed\n' >"$WORK/plan-v2.txt"
FILE_JSON=$(call POST "/workspaces/$WS/files?name=launch-plan.txt" \
    -H "Authorization: Bearer $ADA" --data-binary "@$WORK/plan-v1.txt")
FILE=$(echo "$FILE_JSON" | field id)
echo "file $FILE, version 1, sha256 $(echo "$FILE_JSON" | field sha256)"
# The file's ETag is its version: If-Match makes the second upload fail (412) if
# someone else uploaded in between.
V2_JSON=$(call POST "/files/$FILE/versions" -H "Authorization: Bearer $ADA" \
    -H 'If-Match: "1"' --data-binary "@$WORK/plan-v2.txt")
echo "version $(echo "$V2_JSON" | grep -o '"version":[0-9]*' | cut -d : -f 2), sha256 $(echo "$V2_JSON" | field sha256)"
echo "versions: $(call GET "/files/$FILE/versions" -H "Authorization: Bearer $ADA")"
call GET "/files/$FILE/versions/1/content" -H "Authorization: Bearer $ADA" >"$WORK/got-v1.txt"
call GET "/files/$FILE/content" -H "Authorization: Bearer $ADA" >"$WORK/got-v2.txt"
cmp -s "$WORK/got-v1.txt" "$WORK/plan-v1.txt" && cmp -s "$WORK/got-v2.txt" "$WORK/plan-v2.txt" \
    || { echo "error: downloaded versions differ from the uploads" >&2; exit 1; }
echo "both versions download intact"

echo "== 6. mia's notification of the mention"
MIA=$(json POST /auth/sign-in "" "{\"username\":\"mia-$RUN\",\"password\":\"battery staple\"}" | field token)
for _ in $(seq 1 50); do
    NOTES=$(call GET /notifications -H "Authorization: Bearer $MIA")
    if echo "$NOTES" | grep -q '"mention"'; then
        echo "mia has a mention notification"
        break
    fi
    sleep 0.2
done
echo "$NOTES" | grep -q '"mention"' || { echo "error: no mention notification for mia: $NOTES" >&2; exit 1; }

echo "done: org=$ORG team=$TEAM workspace=$WS task=$TASK comment=$COMMENT file=$FILE"
