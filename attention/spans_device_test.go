package attention

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/simtest"
	"github.com/mlxtrain/mlxtrain/metal"
)

// TestSpanAttentionDevice runs with an accelerator only (thresholds at 0):
// SpanAttention over a growing cache (read in place, rows a capacity apart),
// side-by-side paged caches (a gathered copy) and a rotating window, for a
// prefill chunk and single decode steps, takes the device path and agrees with
// the CPU kernel; the appends copy on the device.
func TestSpanAttentionDevice(t *testing.T) {
	if !metal.Offloading() {
		t.Skip("no accelerator: set MLXTRAIN_DEVICE=sim (TestAttentionOnSimulator does)")
	}
	if !spanOp.OnMetal(1, 1) || !kvCopyOp.OnMetal(1) {
		t.Skip("below the device thresholds: set MLXTRAIN_METAL_MIN=0")
	}
	r := autodiff.SelfTestRand()
	const H, kvh, D = 4, 2, 16
	for name, mk := range map[string]func() SpanCache{
		"growing": func() SpanCache { return &GrowingCache{} },
		"paged3": func() SpanCache {
			return &RowsCache{Seqs: []SpanCache{NewPagedCache(NewBlockPool(3)), NewPagedCache(NewBlockPool(3))}}
		},
		"rotating": func() SpanCache { return NewRotatingCache(64, 0) },
	} {
		cache := mk()
		at := 0
		for step, n := range []int{7, 1, 1, 5, 1} {
			what := fmt.Sprintf("%s step %d", name, step)
			k, v, q := autodiff.RandomTensor(r, -1, 1, 2, n, kvh, D), autodiff.RandomTensor(r, -1, 1, 2, n, kvh, D), autodiff.RandomTensor(r, -1, 1, 2, n, H, D)
			before := metal.Launches()
			cache.Append(k, v)
			assert.Greater(t, metal.Launches(), before, "%s: the append launched", what)
			offs := []int{at, at}
			opt := Options{Causal: true, Window: 5, Layout: BSHD}
			before = metal.Launches()
			got := SpanAttention(q, cache, offs, opt)
			assert.Greater(t, metal.Launches(), before, "%s: attention launched", what)
			want := autodiff.Empty(autodiff.Float32, q.Shape()...)
			spanAttend(want.Float32s(), q.Float32s(), q, cache, offs, opt, (*autodiff.Tensor).Float32s)
			near32(t, want.Float64Values(), got.Float64Values(), what)
			for _, x := range []*autodiff.Tensor{k, v, q, got, want} {
				x.Release()
			}
			at += n
		}
		if rc, ok := cache.(*RowsCache); ok {
			for _, s := range rc.Seqs {
				s.(*PagedCache).Release()
			}
		} else {
			cache.(interface{ Release() }).Release()
		}
	}
	report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
	assert.Contains(t, report, "span_attention: passed")
}

// TestAttentionOnSimulator reruns the cache tests and TestSpanAttentionDevice
// in a child process on the simulator with every threshold at 0. It skips
// without clang unless MLXTRAIN_REQUIRE_CLANG=1.
func TestAttentionOnSimulator(t *testing.T) {
	simtest.Rerun(t, "TestSpanAttentionDevice", "TestSpanCachesEqualRecompute", "TestRotatingCacheSpans", "TestPagedCacheSharesPrefixes", "TestRowsCacheRaggedBatch")
}
