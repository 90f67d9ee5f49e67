# shellcheck shell=bash
# NNCP side by side with sitespool (sourced by tests/bench/run.sh).
#
# Two NNCP nodes, A (sender) and B (receiver), live under one folder: each
# has its own hjson configuration, spool and log, and knows the other as a
# neighbour (public keys exchanged).  No network: nncp-xfer carries the
# packets from A's spool through a directory into B's spool, and nncp-toss
# on B decrypts them into the `incoming` folder of B's neighbour section
# for A (a received file keeps the name nncp-file gave it there; a name
# already taken gets a counter appended).  NNCP is left durable: toss writes
# each file to a temporary name in incoming, fsyncs it, renames it and
# fsyncs incoming (unless $NNCPNOSYNC=1, which these functions never set).

nncp_available() { # installs nncp from Debian's registry when missing
  command -v nncp-toss >/dev/null 2>&1 && return 0
  apt-get install -y nncp >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y nncp >/dev/null 2>&1; } || true
  command -v nncp-toss >/dev/null 2>&1
}

nncp_version() { nncp-toss -version 2>&1 | head -1; }

nncp_nodes() { # nncp_nodes DIR: fresh nodes DIR/A and DIR/B, B accepts files from A into DIR/B/incoming
  local d=$1 n o
  rm -rf "$d"; mkdir -p "$d/A/spool" "$d/B/spool" "$d/B/incoming" "$d/xfer"
  nncp-cfgnew -nocomments > "$d/A/new.hjson"; nncp-cfgnew -nocomments > "$d/B/new.hjson"
  for n in A B; do
    if [ "$n" = A ]; then o=B; else o=A; fi
    {
      echo "{"
      echo "  spool: $d/$n/spool"
      echo "  log: $d/$n/log"
      echo "  noprogress: true"
      echo "  self: {"; _nncp_keys "$d/$n/new.hjson"; echo "  }"
      echo "  neigh: {"
      echo "    self: {"; _nncp_keys "$d/$n/new.hjson" | grep -E '^ *(id|exchpub|signpub|noisepub):'; echo "    }"
      echo "    $o: {"; _nncp_keys "$d/$o/new.hjson" | grep -E '^ *(id|exchpub|signpub|noisepub):'
      [ "$n" = B ] && echo "      incoming: $d/B/incoming"
      echo "    }"
      echo "  }"
      echo "}"
    } > "$d/$n/cfg.hjson"
  done
  rm -f "$d/A/new.hjson" "$d/B/new.hjson" # private keys of both live on in cfg.hjson only
}
_nncp_keys() { awk '/^  self: \{/ {f = 1; next} f && /^  \}/ {exit} f && /^ +[a-z]+:/ {print}' "$1"; }

nncp_file_each() { # nncp_file_each DIR FILE...: one nncp-file process per file, A -> B, as NNCP sends files
  local d=$1 f; shift
  for f in "$@"; do nncp-file -cfg "$d/A/cfg.hjson" -quiet "$f" B: || return 1; done
}

nncp_move() { # nncp_move DIR: A's outbound packets -> DIR/xfer -> B's inbound spool
  nncp-xfer -cfg "$1/A/cfg.hjson" -quiet -tx -mkdir "$1/xfer" && nncp-xfer -cfg "$1/B/cfg.hjson" -quiet -rx "$1/xfer"
}

nncp_toss() { nncp-toss -cfg "$1/B/cfg.hjson" -quiet; } # B: decrypt, verify and deliver every inbound packet

nncp_rx_count() { find "$1/B/spool" -path '*/rx/*' -type f ! -path '*/hdr/*' | wc -l; }
