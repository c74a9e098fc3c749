#!/bin/bash
# The role table, walked over HTTP against a real node: every route the node
# lists at GET /v1/routes is called with every role, an owner of another
# vehicle, no token and a bad token, and the status says whether the role
# got in. The expected table below is this test's own: a route the node has
# and this table lacks (or the other way round), or roles the node declares
# differently, fail the test before the walk. Then: tokens are shown once,
# removing a principal revokes its token at once, and `domicile principals`
# does the same through the API.
. "$(dirname "$0")/lib.sh"
write_config cn
start_node cn

OWN_VIN=$VIN1     # owner's
OTHER_VIN=$VIN2   # owner2's
ERASE_VIN=$VIN3   # the privacy officer erases it during the walk
NEW_VIN=LSVAU2185N2100001
for vin in "$OWN_VIN" "$OTHER_VIN" "$ERASE_VIN"; do register "$vin"; done


declare -A TOK
TOK[admin]=$TOKEN
TOK[operator]=$(principal op1 operator) || exit 1
TOK[analyst]=$(principal an1 analyst) || exit 1
TOK[privacy_officer]=$(principal po1 privacy_officer) || exit 1
TOK[auditor]=$(principal au1 auditor) || exit 1
TOK[owner]=$(principal ow1 owner "[\"$OWN_VIN\"]") || exit 1
TOK[owner2]=$(principal ow2 owner "[\"$OTHER_VIN\"]") || exit 1
TOK[none]=""
TOK[bad]="p1.$(printf 'A%.0s' $(seq 43))"
CALLERS="admin operator analyst privacy_officer auditor owner owner2 none bad"

# call TOKEN METHOD PATH [BODY]: prints the status; the body is in $WORK/last.json.
call() {
	local args=(-sS -o "$WORK/last.json" -w '%{http_code}' -X "$2")
	[ -n "$1" ] && args+=(-H "Authorization: Bearer $1")
	[ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' --data "$4")
	curl "${args[@]}" "http://127.0.0.1:$API_PORT$3"
}

# The expected table: METHOD PATTERN | roles allowed ("*": open) | the
# concrete path to call | its body. Owner-scoped routes name the owner's
# VIN; destructive ones a target whose loss does not matter.
AGG="signal=Vehicle.Speed&from=0&to=100000&fn=avg&step=10000"
ROWS=(
	"GET /v1/health|*|/v1/health|"
	"GET /metrics|admin operator|/metrics|"
	"GET /v1/routes|admin auditor|/v1/routes|"
	"POST /v1/vehicles|admin operator|/v1/vehicles|{\"vin\": \"$NEW_VIN\", \"home\": \"CN\", \"model\": \"walk\"}"
	"GET /v1/vehicles/{vin}|admin operator privacy_officer owner|/v1/vehicles/$OWN_VIN|"
	"GET /v1/vehicles/{vin}/samples|owner|/v1/vehicles/$OWN_VIN/samples?signal=Vehicle.Speed|"
	"GET /v1/vehicles/{vin}/latest|owner|/v1/vehicles/$OWN_VIN/latest|"
	"POST /v1/vehicles/{vin}/erasure-requests|owner|/v1/vehicles/$OWN_VIN/erasure-requests|"
	"DELETE /v1/vehicles/{vin}|privacy_officer|/v1/vehicles/$ERASE_VIN|"
	"GET /v1/erasure-requests|privacy_officer|/v1/erasure-requests|"
	"POST /v1/erasure-requests/{id}/approve|privacy_officer|/v1/erasure-requests/999999/approve|"
	"POST /v1/erasure-requests/{id}/reject|privacy_officer|/v1/erasure-requests/999999/reject|"
	"GET /v1/fleet/aggregate|analyst|/v1/fleet/aggregate?$AGG|"
	"GET /v1/residency/report|admin operator privacy_officer auditor|/v1/residency/report|"
	"POST /v1/keys/rotate|admin operator|/v1/keys/rotate|"
	"POST /v1/principals|admin|/v1/principals|{\"name\": \"walk1\", \"role\": \"auditor\"}"
	"GET /v1/principals|admin|/v1/principals|"
	"DELETE /v1/principals/{name}|admin|/v1/principals/walk1|"
	"GET /v1/audit/checkpoint|auditor|/v1/audit/checkpoint|"
	"GET /v1/audit/key|auditor|/v1/audit/key|"
	"GET /v1/audit/entries|auditor|/v1/audit/entries?start=0&end=1|"
	"GET /v1/audit/proof/inclusion|auditor|/v1/audit/proof/inclusion?index=0&size=1|"
	"GET /v1/audit/proof/consistency|auditor|/v1/audit/proof/consistency?from=1&to=1|"
)

# 1. The node's table and this one name the same routes with the same roles.
out=$(api GET /v1/routes)
expect_status 200 "$out"
node_table=$(body "$out" | jq -r '.routes[] | "\(.method) \(.path)|\(if .open then "*" else (.roles | sort | join(" ")) end)"' | sort)
mine=$(for row in "${ROWS[@]}"; do
	IFS='|' read -r route roles _ <<<"$row"
	[ "$roles" = "*" ] || roles=$(tr ' ' '\n' <<<"$roles" | sort | paste -sd' ')
	echo "$route|$roles"
done | sort)
if [ "$node_table" != "$mine" ]; then
	diff <(echo "$mine") <(echo "$node_table") >&2
	fail "the node's route table (right) differs from the table this test walks (left)"
fi
[ "$(body "$out" | jq '[.routes[] | select(.owner_scoped)] | length')" = 4 ] ||
	fail "owner-scoped routes: $(body "$out" | jq -c '[.routes[] | select(.owner_scoped) | .path]')"

# 2. The walk.
walked=0
for row in "${ROWS[@]}"; do
	IFS='|' read -r route roles path req_body <<<"$row"
	method=${route%% *}
	scoped=0
	[[ "$route" == *"{vin}"* ]] && scoped=1
	for who in $CALLERS; do
		role=$who
		[ "$who" = owner2 ] && role=owner
		status=$(call "${TOK[$who]}" "$method" "$path" "$req_body")
		what="$who: $method $path -> $status $(head -c 200 "$WORK/last.json")"
		if [ "$roles" = "*" ]; then
			[ "$status" = 200 ] || fail "open route: $what"
		elif [ "$who" = none ] || [ "$who" = bad ]; then
			[ "$status" = 401 ] || fail "expected 401: $what"
		elif [[ " $roles " != *" $role "* ]]; then
			[ "$status" = 403 ] || fail "expected 403: $what"
		elif [ "$who" = owner2 ] && [ $scoped = 1 ]; then
			# Another owner's VIN looks exactly like one not registered here.
			[ "$status" = 404 ] || fail "expected 404 for another owner's vehicle: $what"
			jq -e --arg m "no vehicle $OWN_VIN is registered at this site" '.error == $m' \
				"$WORK/last.json" >/dev/null || fail "404 worded differently: $what"
		else
			case $status in
			401 | 403 | 5*) fail "expected to get in: $what" ;;
			404) [ $scoped = 1 ] && fail "an owner refused their own vehicle: $what" ;;
			esac
		fi
		walked=$((walked + 1))
	done
done
[ $walked = $((${#ROWS[@]} * 9)) ] || fail "walked $walked calls"
# The owner's own VIN, by an owner of another, and an unknown VIN, word for word.
status=$(call "${TOK[owner]}" GET "/v1/vehicles/$NEW_VIN/latest")
[ "$status" = 404 ] || fail "owner on a VIN registered but not theirs: $status"
unknown_body=$(cat "$WORK/last.json")
status=$(call "${TOK[owner]}" GET "/v1/vehicles/LSVAU2187N2100002/latest")
[ "$status" = 404 ] || fail "owner on an unknown VIN: $status"
[ "$(jq -r .error <<<"$unknown_body" | sed 's/LSVAU2185N2100001/VIN/')" = \
	"$(jq -r .error "$WORK/last.json" | sed 's/LSVAU2187N2100002/VIN/')" ] ||
	fail "an owner can tell a foreign VIN from an unknown one"

# 3. Tokens are shown once: listing principals shows no token and no hash.
out=$(api GET /v1/principals)
expect_status 200 "$out"
listing=$(body "$out")
[ "$(jq '.principals | length' <<<"$listing")" = 6 ] || fail "principals: $listing"
jq -e '([.principals[] | keys[]] | unique) == ["created_by", "created_ms", "name", "role", "vins"]' \
	<<<"$listing" >/dev/null || fail "unexpected fields: $listing"
for who in operator analyst privacy_officer auditor owner owner2; do
	secret=${TOK[$who]#*.}
	grep -qF -- "$secret" <<<"$listing" && fail "a token is in the listing"
done
grep -q 'sha256\$' <<<"$listing" && fail "a token hash is in the listing"
[ "$(jq -c '.principals[] | select(.name == "ow1") | .vins' <<<"$listing")" = "[\"$OWN_VIN\"]" ] ||
	fail "owner's vins: $listing"
# Nor is a token or its secret anywhere in the node's files or log.
for who in operator owner; do
	secret=${TOK[$who]#*.}
	grep -rqF -- "$secret" "$WORK/cn.data" "$WORK/cn.log" && fail "$who's token is stored"
done

# 4. Bad requests to POST /v1/principals.
for bad in '{"name": "x1", "role": "admin"}' '{"name": "x2", "role": "boss"}' \
	'{"name": "Upper", "role": "auditor"}' '{"name": "x3", "role": "auditor", "vins": []}' \
	'{"name": "x4", "role": "owner"}' "{\"name\": \"x5\", \"role\": \"owner\", \"vins\": [\"LSVAU2187N2100002\"]}" \
	"{\"name\": \"x6\", \"role\": \"owner\", \"vins\": [\"$OWN_VIN\", \"$OWN_VIN\"]}" \
	'{"name": "x7", "role": "auditor", "extra": 1}' '[]' 'not json'; do
	out=$(api POST /v1/principals "$bad")
	expect_status 400 "$out"
done
out=$(api POST /v1/principals '{"name": "op1", "role": "auditor"}')
expect_status 409 "$out"
out=$(api POST /v1/principals '{"name": "walk1", "role": "auditor"}')
expect_status 409 "$out" # removed during the walk: names are not reused
out=$(api DELETE /v1/principals/nobody)
expect_status 404 "$out"
out=$(api DELETE /v1/principals/admin)
expect_status 400 "$out"

# 5. Removing a principal revokes its token at once.
tmp=$(principal tmp1 auditor) || exit 1
[ "$(call "$tmp" GET /v1/residency/report)" = 200 ] || fail "new auditor refused"
out=$(api DELETE /v1/principals/tmp1)
expect_status 200 "$out"
[ "$(call "$tmp" GET /v1/residency/report)" = 401 ] || fail "a removed principal's token still works"

# 6. Unknown routes and wrong methods.
[ "$(call "$TOKEN" GET /v1/nothing)" = 404 ] || fail "unknown route"
[ "$(call "$TOKEN" PUT /v1/principals)" = 405 ] || [ "$(call "$TOKEN" PUT /v1/principals)" = 501 ] ||
	fail "PUT: $(call "$TOKEN" PUT /v1/principals)"
out=$(curl -sS -D - -o /dev/null -X DELETE -H "Authorization: Bearer $TOKEN" \
	"http://127.0.0.1:$API_PORT/v1/principals")
grep -q "^HTTP/1.1 405" <<<"$out" || fail "DELETE /v1/principals: $out"
grep -qi "^Allow: POST, GET" <<<"$out" || fail "no Allow header: $out"

# 7. The same through `domicile principals`, as the admin, over the API.
conn=(--api "http://127.0.0.1:$API_PORT" --token-file "$WORK/cn.data/admin.token")
cli_token=$("$DOMICILE" principals add cli1 --role owner --vin "$OTHER_VIN" "${conn[@]}" 2>"$WORK/cli.err") ||
	fail "principals add: $(cat "$WORK/cli.err")"
[[ "$cli_token" == p*.* ]] || fail "principals add printed: $cli_token"
[ "$(call "$cli_token" GET "/v1/vehicles/$OTHER_VIN")" = 200 ] || fail "the CLI's owner token"
"$DOMICILE" principals list "${conn[@]}" >"$WORK/list.out" 2>"$WORK/cli.err" ||
	fail "principals list: $(cat "$WORK/cli.err")"
grep -qE "^cli1 +owner +admin .*$OTHER_VIN" "$WORK/list.out" || fail "list: $(cat "$WORK/list.out")"
grep -qF -- "${cli_token#*.}" "$WORK/list.out" && fail "list shows a token"
"$DOMICILE" principals list --json "${conn[@]}" | jq -e '.principals | length == 7' >/dev/null ||
	fail "list --json"
"$DOMICILE" principals remove cli1 "${conn[@]}" 2>"$WORK/cli.err" ||
	fail "principals remove: $(cat "$WORK/cli.err")"
[ "$(call "$cli_token" GET "/v1/vehicles/$OTHER_VIN")" = 401 ] || fail "removed by the CLI, still works"
# Failures: exit 1 for a refusal by the node, 2 for usage.
"$DOMICILE" principals remove cli1 "${conn[@]}" 2>/dev/null
[ $? = 1 ] || fail "removing twice should exit 1"
echo "${TOK[operator]}" >"$WORK/operator.token"
"$DOMICILE" principals list --api "http://127.0.0.1:$API_PORT" --token-file "$WORK/operator.token" 2>"$WORK/cli.err"
[ $? = 1 ] && grep -q "HTTP 403" "$WORK/cli.err" || fail "an operator listed principals: $(cat "$WORK/cli.err")"
"$DOMICILE" principals add "Bad Name" --role auditor "${conn[@]}" 2>/dev/null
[ $? = 2 ] || fail "a bad name should exit 2"
"$DOMICILE" principals add x9 --role auditor 2>/dev/null
[ $? = 2 ] || fail "no connection should exit 2"

# 8. Principals and their roles survive a restart; removed ones stay removed.
stop_node TERM
start_node cn
[ "$(call "${TOK[auditor]}" GET /v1/residency/report)" = 200 ] || fail "auditor after restart"
[ "$(call "${TOK[owner]}" GET "/v1/vehicles/$OWN_VIN/latest")" = 200 ] || fail "owner after restart"
[ "$(call "${TOK[owner]}" GET "/v1/vehicles/$OTHER_VIN/latest")" = 404 ] || fail "owner2's VIN after restart"
[ "$(call "$tmp" GET /v1/residency/report)" = 401 ] || fail "a removed token works after restart"
pass
