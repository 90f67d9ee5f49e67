#!/usr/bin/env bash
# t_sender_crash.sh with every pair sealed: a sealed instruction names no
# file, so sending again recognises the queued files, and a pair queued
# by a killed send is recorded by its name, from their rows in site.db
# (queued_files), committed with the batch's numbers before publication.
SENDER_CRASH_SEALED=1 exec bash "$(dirname "$0")/t_sender_crash.sh"
