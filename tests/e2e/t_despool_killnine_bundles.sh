#!/usr/bin/env bash
# Exactly once under kill -9 with bundles: t_despool_killnine.sh with the
# sender packing the 1,000 files into bundles of 8 (125 pairs), so that
# kills land while members are staged, committed and published (a batch
# per bundle: many commits inside the kill windows).
KILLNINE_BUNDLE=8 KILLNINE_BATCH=1 exec bash "$(dirname "$0")/t_despool_killnine.sh"
