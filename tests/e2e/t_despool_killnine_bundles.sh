#!/usr/bin/env bash
# Exactly once under kill -9 with bundles: t_despool_killnine.sh with the
# sender packing the 1,000 files into bundles of 16 (63 pairs), so that
# kills land while members are staged, committed and published (batches
# of 3 bundles: many commits inside the kill windows).
KILLNINE_BUNDLE=16 KILLNINE_BATCH=3 exec bash "$(dirname "$0")/t_despool_killnine.sh"
