#!/usr/bin/env bash
# Regenerates the Temporal UI screenshots of docs/operations.md: runs
# `herald dev` in a temporary directory, makes a retrying and a dead
# delivery, and has headless Chromium photograph the UI.
# Needs Debian's chromium (apt-get install chromium). Run from the
# repository's root: docs/screenshots/take.sh
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/herald" ./cmd/herald
cd "$work"
./herald dev --grpc-addr 127.0.0.1:56051 --http-addr 127.0.0.1:56080 --temporal-addr 127.0.0.1:57233 --ui-addr 127.0.0.1:58233 >dev.log 2>&1 &
./herald listen --addr 127.0.0.1:59001 --status 500 >fail.log 2>&1 &
./herald listen --addr 127.0.0.1:59002 --status 400 >dead.log 2>&1 &
export HERALD_ADDR=127.0.0.1:56051
for _ in $(seq 60); do ./herald subscriptions list >/dev/null 2>&1 && break; sleep 1; done
./herald subscriptions create --name "orders (flaky sink)" --sink http://127.0.0.1:59001/hook --type com.example.order.created --skip-validation >/dev/null
./herald subscriptions create --name "invoices (rejects)" --sink http://127.0.0.1:59002/hook --type com.example.invoice.issued --skip-validation >/dev/null
./herald publish --id order-1 --source /orders --type com.example.order.created --data '{"order": 1}' >/dev/null
./herald publish --id invoice-7 --source /billing --type com.example.invoice.issued --data '{"invoice": 7}' >/dev/null
sleep 8
# Playwright drives Debian's Chromium: the UI is a single-page app that
# keeps polling, so a plain headless screenshot never settles.
npm install --silent --prefix "$work/pw" playwright-core@1 >/dev/null
cat >"$work/shot.js" <<'JS'
const { chromium } = require(process.argv[2] + '/node_modules/playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(process.argv[4], { waitUntil: 'networkidle', timeout: 60000 }).catch(() => {});
  await page.waitForTimeout(3000);
  await page.screenshot({ path: process.argv[3] });
  await browser.close();
})();
JS
shot() { # name url
  timeout 120 node "$work/shot.js" "$work/pw" "$out/$1.png" "$2" || echo "no screenshot of $2" >&2
}
ui=http://127.0.0.1:58233/namespaces/default/workflows
shot workflows-retrying "$ui?query=$(python3 -c 'import urllib.parse;print(urllib.parse.quote("HeraldDeliveryState=\"retrying\""))')"
shot workflows-dead "$ui?query=$(python3 -c 'import urllib.parse;print(urllib.parse.quote("HeraldDeliveryState=\"dead\""))')"
dead=$(./herald dead-letters list -o json | python3 -c 'import json,sys; d=json.load(sys.stdin)["deliveries"][0]; print(d["workflowId"])')
q=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote("WorkflowId=\"%s\"" % sys.argv[1]))' "$dead")
run=$(curl -s "http://127.0.0.1:58233/api/v1/namespaces/default/workflows?query=$q" | python3 -c 'import json,sys; print(json.load(sys.stdin)["executions"][0]["execution"]["runId"])')
shot workflow-dead "http://127.0.0.1:58233/namespaces/default/workflows/$(python3 -c "import urllib.parse,sys;print(urllib.parse.quote(sys.argv[1], safe=''))" "$dead")/$run/history"
echo "screenshots in $out"
