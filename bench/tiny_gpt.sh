#!/usr/bin/env bash
# Side by side: a training step of the tiny GPT of the layers issue in Go
# (BenchmarkTinyGPTStep in ./models) and in PyTorch (bench/torch_tiny_gpt.py,
# Debian's python3-torch), at 1 and 2 threads. Each round runs the four
# measurements one after the other, so load from other processes hits both
# sides alike; the table shows the median over the rounds of each side's median
# step in tokens/s and their ratio, and each side's CPU time per step (process
# time, all threads) with the ratio of those: on a shared machine the CPU-time
# ratio at 1 thread is the steadier figure.
#
# With --moe both sides train the top-2-of-8 MoE version of the model of the
# MoE/SSM issue instead (BenchmarkTinyMoEStep, torch_tiny_gpt.py --moe).
#
# Usage: bench/tiny_gpt.sh [--moe] [rounds]   (default 3; run from anywhere in the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
bench=TinyGPTStep
pyflag=()
if [[ ${1:-} == --moe ]]; then
	bench=TinyMoEStep
	pyflag=(--moe)
	shift
fi
rounds=${1:-3}
python=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/models.test" ./models

metric() { # metric NAME < benchmark output: the value before NAME
	awk -v name="$1" -v bench="^Benchmark$bench" '$0 ~ bench { for (i = 2; i <= NF; i++) if ($i == name) print $(i-1) }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for ((r = 1; r <= rounds; r++)); do
	for t in 1 2; do
		out=$(MLXTRAIN_THREADS=$t "$tmp/models.test" -test.run '^$' -test.bench "^Benchmark$bench\$" -test.benchtime 20x)
		echo "$out" | metric tokens/s >>"$tmp/go$t"
		echo "$out" | metric cpu-ms/step >>"$tmp/cpu$t"
		py=$("$python" bench/torch_tiny_gpt.py "$t" "${pyflag[@]}")
		echo "$py" | sed -n 's/.*tokens\/s=\([0-9.]*\).*/\1/p' >>"$tmp/torch$t"
		echo "$py" | sed -n 's/.*cpu_ms=\([0-9.]*\).*/\1/p' >>"$tmp/tcpu$t"
		echo "round $r, $t thread(s): go $(tail -1 "$tmp/go$t") tokens/s, pytorch $(tail -1 "$tmp/torch$t") tokens/s" >&2
	done
done

printf '%-8s %12s %15s %7s %12s %15s %9s\n' threads go_tokens/s torch_tokens/s ratio go_cpu_ms torch_cpu_ms cpu_ratio
for t in 1 2; do
	g=$(median <"$tmp/go$t")
	p=$(median <"$tmp/torch$t")
	c=$(median <"$tmp/cpu$t")
	tc=$(median <"$tmp/tcpu$t")
	awk -v t="$t" -v g="$g" -v p="$p" -v c="$c" -v tc="$tc" \
		'BEGIN { printf "%-8s %12.0f %15.0f %6.2fx %12.1f %15.1f %8.2fx\n", t, g, p, g / p, c, tc, tc / c }'
done
