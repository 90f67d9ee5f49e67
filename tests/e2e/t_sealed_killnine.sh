#!/usr/bin/env bash
# Exactly once under kill -9 with sealed packages: t_despool_killnine.sh
# with every one of the 1,000 pairs sealed to SS1, so that kills land
# between the signature pass and the opening pass of a package, while
# plaintext is staged, committed and published.
KILLNINE_SEALED=1 exec bash "$(dirname "$0")/t_despool_killnine.sh"
