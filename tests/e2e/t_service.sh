#!/usr/bin/env bash
# The daemons as services (issue 13): the metrics file parses with the
# Prometheus client library's parser (Debian python3-prometheus-client; a
# strict line check where it is missing) and its figures match the status
# messages; log_format = ccm writes CMTrace's <![LOG[...]LOG]!> records with
# the right severities and a hostile name cannot end a record early;
# SIGHUP reopens logs renamed away (logrotate) and reads site.conf again,
# keeping the running settings when the file is broken; piped stdout and
# stderr stay in order.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

mksite PS1 "bundle_max_files = 1"
mksite SS1 "rescan_interval = 1s" "metrics_file = metrics/sitespool.prom"
mkdir -p "$T/SS1/metrics"
peer PS1 SS1; exchange PS1 SS1
start_despooler SS1
for i in 1 2 3; do echo "data $i" >"$T/f$i.txt"; done
"$S" -C "$T/PS1" send --to SS1 "$T"/f1.txt "$T"/f2.txt "$T"/f3.txt >/dev/null
# One pair the despooler must quarantine: unsigned (4404).
echo unsigned >"$T/u.txt"
"$S" -C "$T/PS1" send --unsigned --to SS1 "$T/u.txt" >/dev/null 2>&1 || true
wait_until 20 eval '[ "$(status_count SS1 4400)" -ge 3 ] && [ "$(status_count SS1 4404)" -ge 1 ]' ||
  fail "deliveries did not happen"

# ---- metrics: written at reload too, so ask for a fresh one
kill -HUP "$DPID"
M=$T/SS1/metrics/sitespool.prom
wait_until 10 eval '[ -s "$M" ] && grep -q "outcome=\"rejected\"} 1" "$M"' ||
  fail "no up-to-date metrics file: $(cat "$M" 2>/dev/null | head -5)"
if "$PY" -c 'import prometheus_client' 2>/dev/null; then
  "$PY" - "$M" >"$T/metrics.parsed" <<'PY' || fail "the Prometheus parser refused the file"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name} {labels} {s.value:g}")
PY
  parser="prometheus_client"
else
  # Without the library: every line is a comment or name{labels} value.
  grep -vE '^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+\{([a-z_]+="[^"]*",?)*\} -?[0-9.e+]+)$' "$M" &&
    fail "lines above are not Prometheus text format"
  sed -E 's/^([a-z_]+)\{(.*)\} (.*)$/\1 \2 \3/; s/"//g' "$M" | grep -v '^#' >"$T/metrics.parsed"
  parser="a strict line check (python3-prometheus-client is not installed)"
fi
value() { awk -v n="$1" -v l="$2" '$1 == n && $2 == l { print $3 }' "$T/metrics.parsed"; }
assert_eq "$(value sitespool_despool_pairs_total outcome=delivered,site=SS1)" "$(status_count SS1 4400)" \
  "delivered pairs: metrics vs 4400 messages"
assert_eq "$(value sitespool_despool_pairs_total outcome=rejected,site=SS1)" "$(status_count SS1 4404)" \
  "rejected pairs: metrics vs 4404 messages"
assert_eq "$(value sitespool_ledger_pairs from=PS1,site=SS1)" "$(status_count SS1 4400)" \
  "ledger pairs from PS1 vs 4400 messages"
assert_eq "$(value sitespool_quarantined_pairs site=SS1)" 1 "quarantined pairs"
assert_eq "$(value sitespool_receive_pairs site=SS1)" 0 "pairs in receive"
pass "metrics file parses ($parser) and matches status: $(status_count SS1 4400) delivered, 1 rejected"

# ---- log_format = ccm, switched on by a reload
sed -i 's/^log_format = .*/log_format = ccm/' "$T/SS1/site.conf"
kill -HUP "$DPID"
wait_until 10 grep -q 'LOG\[Reload: settings read again' "$T/SS1/logs/despool.log" ||
  fail "no ccm line after the reload: $(tail -2 "$T/SS1/logs/despool.log")"
# A file whose name tries to end the record and forge another one.
evil=$'x]LOG]!><time="00:00:00.000+000" date="01-01-2000" component="FORGED" context="" type="1" thread="1" file="">'
printf 'evil\n' >"$T/evil.txt"
"$S" -C "$T/PS1" send --to SS1 --name "e${evil//\//_}" "$T/evil.txt" >/dev/null 2>&1 || true
echo forged-key >"$T/k.txt"
"$S" -C "$T/PS1" send --unsigned --to SS1 "$T/k.txt" >/dev/null 2>&1 || true
wait_until 20 eval '[ "$(status_count SS1 4404)" -ge 2 ]' || fail "second unsigned pair not rejected"
sleep 0.5
ccm_re='^<!\[LOG\[.*\]LOG\]!><time="[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}[+-][0-9]{3}" date="[0-9]{2}-[0-9]{2}-[0-9]{4}" component="SITESPOOL_DESPOOLER" context="" type="[123]" thread="[0-9]+" file="">$'
sed -n '/LOG\[Reload: settings read again/,$p' "$T/SS1/logs/despool.log" >"$T/ccm.log"
bad=$(grep -cvE "$ccm_re" "$T/ccm.log" || true)
[ "$bad" = 0 ] || fail "$bad ccm lines are malformed: $(grep -vE "$ccm_re" "$T/ccm.log" | head -2)"
# One record terminator per line: the hostile name's copy was defused.
[ "$(grep -o ']LOG]!>' "$T/ccm.log" | wc -l)" = "$(wc -l <"$T/ccm.log")" ] ||
  fail "a record was ended early (a hostile name forged one)"
grep -q 'x\]LOG\]!?<time=' "$T/ccm.log" || fail "the hostile name did not reach the log defused"
grep -E 'LOG\[Despooler received an instruction and package .*not signed' "$T/ccm.log" |
  grep -q 'type="3"' || fail "4404 (an error) is not type 3"
grep -E 'LOG\[Despooler stored package' "$T/ccm.log" | grep -q 'type="1"' ||
  fail "a delivery is not type 1"
# The bias is minutes to add to local time for UTC: +300 five hours west,
# -060 an hour east (PS1 logs in the trace form, which has the same bias).
TZ=EST5 "$S" -C "$T/PS1" sender --once >/dev/null
tail -1 "$T/PS1/logs/sender.log" | grep -qE '\$\$<.*[0-9]{2}\.[0-9]{3}\+300>' ||
  fail "bias west of UTC: $(tail -1 "$T/PS1/logs/sender.log")"
TZ=CET-1 "$S" -C "$T/PS1" sender --once >/dev/null
tail -1 "$T/PS1/logs/sender.log" | grep -qE '\$\$<.*[0-9]{2}\.[0-9]{3}-060>' ||
  fail "bias east of UTC: $(tail -1 "$T/PS1/logs/sender.log")"
pass "log_format = ccm: every record well formed, severities as types (4404 -> 3), no record ended early by a hostile name; bias +300 west, -060 east"

# ---- logrotate: rename away, SIGHUP, the next line goes to a new file
mv "$T/SS1/logs/despool.log" "$T/SS1/logs/despool.log.1"
kill -HUP "$DPID"
wait_until 10 test -f "$T/SS1/logs/despool.log" || fail "no new despool.log after SIGHUP"
grep -q 'Reload: settings read again' "$T/SS1/logs/despool.log" || fail "the new log lacks the reload line"
pass "logrotate: a renamed log is reopened at SIGHUP"

# ---- a broken site.conf at reload: reported, the running settings kept
cp "$T/SS1/site.conf" "$T/site.conf.good"
echo "rescan_interval = soon" >>"$T/SS1/site.conf"
kill -HUP "$DPID"
wait_until 10 grep -q 'Reload: kept the running settings' "$T/SS1/logs/despool.log" ||
  fail "a broken site.conf was not reported at reload"
cp "$T/site.conf.good" "$T/SS1/site.conf"
echo "after reload" >"$T/f4.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/f4.txt" >/dev/null
wait_until 20 test -f "$(incoming SS1)/f4.txt" || fail "the despooler stopped working after a bad reload"
kill -0 "$DPID" || fail "the despooler died"
pass "a broken site.conf at reload is reported and the running settings kept; delivery goes on"

# ---- piped stdout and stderr stay in order
"$S" -C "$T/PS1" send --unsigned --to SS1 "$T/f1.txt" --name order.txt >"$T/both.out" 2>&1 || true
first=$(head -1 "$T/both.out")
case $first in
  *warning*unsigned*) pass "piped: stderr's warning comes first, as it was written" ;;
  *) fail "piped output out of order: $(cat "$T/both.out")" ;;
esac
