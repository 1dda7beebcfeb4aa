#!/usr/bin/env bash
# Seeds corpus/client_input with real client requests, one a file: the `/v1/stream` ops and
# REST bodies the tests send and docs/PROTOCOL.md describes, and every partner and product of
# the demo catalog as an admin PUT. Each file starts with the byte that picks its parser
# (src/http/client_input.rs): 0 stream op, 1 reserve, 2 checkout, 3 restock, 4 product PUT,
# 5 partner PUT, 6 dev token, 7 bearer token; a PUT's path id and a newline come before its
# body, and a token's Authorization header value before the query string. Needs jq and openssl. Run from anywhere: `fuzz/seed_client_input.sh`.
set -euo pipefail
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
out=$fuzz_dir/corpus/client_input
catalog=$fuzz_dir/../src/decorate/demo_catalog.json
mkdir -p "$out"
n=0

# seed SELECTOR TEXT: writes one input.
seed() {
    n=$((n + 1))
    { printf "\\$(printf '%03o' "$1")"; printf '%s' "$2"; } >"$out/seed-$(printf '%03d' $n)"
}

address='{"name":"Ada Lovelace","line1":"12 St James'"'"'s Square","city":"London","postal_code":"SW1Y 4JH","country":"GB"}'
card='{"number":"4242 4242 4242 4242","exp_month":12,"exp_year":2040,"cvc":"123","name":"Ada Lovelace"}'
amex='{"number":"378282246310005","exp_month":"04","exp_year":2031,"cvc":"1234","name":"Ada Lovelace"}'

# 0: /v1/stream ops.
for op in \
    '{"op":"subscribe","id":"1","timeline":"all"}' \
    '{"op":"subscribe","id":"b","timeline":"buyable","since":0}' \
    '{"op":"subscribe","id":"h","timeline":"home","follows":["bob","CAROL"]}' \
    '{"op":"subscribe","id":"u","timeline":"user:Burberry","since":42}' \
    '{"op":"subscribe","id":"p","timeline":"partner:burberry"}' \
    '{"op":"subscribe","id":"x","timeline":"product:burberry-cashmere-scarf"}' \
    '{"op":"unsubscribe","id":"2","timeline":"all"}' \
    '{"op":"ping","id":"p1"}' \
    '{"op":"ping","id":7}' \
    '{"op":"ping"}' \
    '{"op":"fly","id":"2"}' \
    '{"op":"reserve","id":"a","product":"hat","quantity":2,"idempotency_key":"k1"}' \
    '{"op":"reserve","id":"3","product":"bag"}' \
    '{"op":"reserve","id":"2","product":"bag","quantity":0}' \
    '{"op":"release","id":"5","reservation":"res_0000000000000001"}' \
    '{"op":"release","id":"6","reservation":"garbage"}' \
    "{\"op\":\"checkout\",\"id\":\"c1\",\"reservation\":\"res_1\",\"shipping\":$address,\"payment\":$card}" \
    "{\"op\":\"checkout\",\"id\":\"c2\",\"reservation\":\"res_1\",\"shipping\":{\"saved\":\"addr_1\"},\"payment\":{\"saved\":\"pm_1\"},\"save\":true,\"share_card_with_seller\":true,\"idempotency_key\":\"k\"}" \
    '{"op":"checkout","id":"broken","payment":{"number":"4242424242424242","cvc":"123'; do
    seed 0 "$op"
done
# 1: POST /v1/reservations.
seed 1 '{"product":"burberry-cashmere-scarf","quantity":1}'
seed 1 '{"product":"hat","quantity":2,"extra":1}'
# 2: POST /v1/orders.
seed 2 "{\"reservation\":\"res_1\",\"shipping\":$address,\"payment\":$card,\"save\":true}"
seed 2 "{\"reservation\":\"res_1\",\"shipping\":$address,\"payment\":$amex,\"share_card_with_seller\":true}"
seed 2 '{"reservation":"res_1","shipping":{"saved":"addr_1"},"payment":{"saved":"pm_1"},"idempotency_key":"k2"}'
# 3: POST /v1/admin/products/{id}/restock.
seed 3 '{"quantity":5}'
# 4 and 5: PUT /v1/admin/products/{id} and /v1/admin/partners/{id}, the demo catalog's.
while IFS= read -r product; do
    seed 4 "$(jq -r .id <<<"$product")"$'\n'"$product"
done < <(jq -c '.products[]' "$catalog")
seed 4 "$(jq -c '.products[0] | del(.id)' "$catalog")"
while IFS= read -r partner; do
    seed 5 "$(jq -r .id <<<"$partner")"$'\n'"$partner"
done < <(jq -c '.partners[]' "$catalog")
# 6: POST /v1/dev/tokens.
for role in customer partner admin ingest; do
    seed 6 "{\"$role\":\"alice\"}"
done
# 7: a request's token, signed with the target's fixed secret (FIXED_SECRET in
# src/http/client_input.rs) so the claims are read too, in the header and in the query.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
signed="$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url).$(printf '%s' \
    '{"sub":"alice","role":"customer","exp":4102444800,"iat":1700000000}' | b64url)"
signature=$(printf '%s' "$signed" |
    openssl dgst -sha256 -hmac "client_input fuzz target's fixed secret" -binary | b64url)
seed 7 "Bearer $signed.$signature"
seed 7 $'\n'"token=$signed.$signature&since=4"
seed 7 "bearer $signed.forged"
seed 7 "Basic YWxpY2U6c2VjcmV0"$'\n'"x=1&token="
echo "wrote $n inputs to $out"
