#!/usr/bin/env bash
# Side by side: a training step of the tiny GPT of the layers issue in Go
# (BenchmarkTinyGPTStep in ./models) and in PyTorch (bench/torch_tiny_gpt.py,
# Debian's python3-torch), at 1 and 2 threads. Each round runs the four
# measurements one after the other, so load from other processes hits both
# sides alike; the table shows the median over the rounds of each side's median
# step, in tokens/s, and Go's CPU time per step.
#
# Usage: bench/tiny_gpt.sh [rounds]   (default 3; run from anywhere in the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
python=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/models.test" ./models

metric() { # metric NAME < benchmark output: the value before NAME
	awk -v name="$1" '/^BenchmarkTinyGPTStep/ { for (i = 2; i <= NF; i++) if ($i == name) print $(i-1) }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for ((r = 1; r <= rounds; r++)); do
	for t in 1 2; do
		out=$(MLXTRAIN_THREADS=$t "$tmp/models.test" -test.run '^$' -test.bench TinyGPTStep -test.benchtime 20x)
		echo "$out" | metric tokens/s >>"$tmp/go$t"
		echo "$out" | metric cpu-s/op >>"$tmp/cpu$t"
		"$python" bench/torch_tiny_gpt.py "$t" | sed -n 's/.*tokens\/s=\([0-9.]*\).*/\1/p' >>"$tmp/torch$t"
		echo "round $r, $t thread(s): go $(tail -1 "$tmp/go$t") tokens/s, pytorch $(tail -1 "$tmp/torch$t") tokens/s" >&2
	done
done

printf '%-8s %14s %14s %8s %14s\n' threads go_tokens/s torch_tokens/s ratio go_cpu_ms/step
for t in 1 2; do
	g=$(median <"$tmp/go$t")
	p=$(median <"$tmp/torch$t")
	c=$(median <"$tmp/cpu$t")
	awk -v t="$t" -v g="$g" -v p="$p" -v c="$c" 'BEGIN { printf "%-8s %14.0f %14.0f %7.2fx %14.1f\n", t, g, p, g / p, c * 1000 }'
done
