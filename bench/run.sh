#!/bin/sh
# Runs every evq benchmark and, given an earlier run's file, compares the two
# with benchstat.
#
#   bench/run.sh new.txt [old.txt]
set -eu
out=${1:?usage: bench/run.sh NEW.txt [OLD.txt]}
cd "$(dirname "$0")/.."
go test -run XXX -bench . -skip Backlog -benchtime 2s -count 3 -timeout 60m ./... | tee "$out"
go test -run XXX -bench Backlog -benchtime 1x -timeout 30m ./bench | tee -a "$out"
go run golang.org/x/perf/cmd/benchstat@latest ${2:-} "$out"
