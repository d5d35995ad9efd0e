package attention

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// TestTiledMatchesReference runs the GEMM-tile kernels over the flash test cases
// (every length, head dim, GQA ratio, mask and layout) against the float64
// reference, with the float32 bound of the flash kernels.
func TestTiledMatchesReference(t *testing.T) {
	bothPaths(t, func(t *testing.T) { testTiledMatchesReference(t, flashCases) })
}

// tileEdgeCases put sequence lengths on both sides of the tiles' edges (64 query
// rows, tiledKBlock keys, strips of 4 rows and 8 keys) for every head dim the
// kernels special-case, with causal and window masks and grouped queries.
var tileEdgeCases = []attnCase{
	{B: 1, Tq: 1, Tk: 1, Hq: 2, Hkv: 1, D: 80, opt: Options{Causal: true}},
	{B: 2, Tq: 7, Tk: 7, Hq: 2, Hkv: 2, D: 32, opt: Options{Causal: true}},
	{B: 1, Tq: 33, Tk: 33, Hq: 4, Hkv: 2, D: 64, opt: Options{Causal: true, Window: 9}},
	{B: 1, Tq: 127, Tk: 127, Hq: 2, Hkv: 1, D: 80, opt: Options{Causal: true}},
	{B: 2, Tq: 128, Tk: 128, Hq: 4, Hkv: 4, D: 32, opt: Options{Causal: true}},
	{B: 1, Tq: 128, Tk: 128, Hq: 4, Hkv: 2, D: 64},
	{B: 1, Tq: 129, Tk: 129, Hq: 2, Hkv: 1, D: 32, opt: Options{Causal: true, Window: 70}},
	{B: 1, Tq: 129, Tk: 129, Hq: 4, Hkv: 1, D: 80, opt: Options{Causal: true, Layout: BHSD}},
	{B: 1, Tq: 33, Tk: 129, Hq: 2, Hkv: 2, D: 64, opt: Options{Causal: true}},
	{B: 1, Tq: 257, Tk: 257, Hq: 2, Hkv: 1, D: 32, opt: Options{Causal: true}},
}

func TestTiledTileEdges(t *testing.T) {
	bothPaths(t, func(t *testing.T) { testTiledMatchesReference(t, tileEdgeCases) })
}

// bothPaths runs f with the SIMD kernels (where the CPU has them: AVX-512, then
// AVX2 alone) and again on the Go paths other CPUs take: row loops, tile products
// through gemm.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("simd", f)
	if z, vz := avx512, vecmath.AVX512; z || vz {
		avx512, vecmath.AVX512 = false, false
		t.Run("avx2", f)
		avx512, vecmath.AVX512 = z, vz
	}
	if vecmath.AVX2FMA {
		vecmath.AVX2FMA = false
		defer func() { vecmath.AVX2FMA = true }()
		t.Run("go", f)
	}
}

// testTiledMatchesReference runs the tiled forward and backward on cases
// against the float64 reference, and again with the forward's probability
// store where the shape allows one.
func testTiledMatchesReference(t *testing.T, cases []attnCase) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			d := c.dims()
			a := newAttnData(rng, c)
			lse := make([]float64, d.Batch*d.QHeads*d.QLen)
			FlashForward(make([]float64, len(a.out)), lse, a.q, a.k, a.v, d, c.opt)
			for _, store := range []bool{false, true} {
				n := pStoreLen(d, c.opt)
				if store && n == 0 {
					continue
				}
				out := nans(len(a.out))
				lse32 := nans(len(lse))
				// The store starts as NaN too: the backward must read only
				// what the forward wrote.
				var ps []float32
				if store {
					ps = nans(n)
				}
				tiledForward(out, lse32, a.q32, a.k32, a.v32, ps, d, c.opt)
				// Outputs start as NaN: the kernels must write every element.
				dq, dk, dv := nans(len(a.q)), nans(len(a.k)), nans(len(a.v))
				tiledBackward(dq, dk, dv, a.q32, a.k32, a.v32, out, a.dout32, lse32, ps, d, c.opt)
				for _, x := range []struct {
					name string
					got  []float32
					want []float64
				}{{"out", out, a.out}, {"lse", lse32, lse}, {"dq", dq, a.dq}, {"dk", dk, a.dk}, {"dv", dv, a.dv}} {
					err, scale := maxErr(x.got, x.want)
					t.Logf("store %v %s: max err %.3g, max |ref| %.3g", store, x.name, err, scale)
					assert.LessOrEqual(t, err, 1e-5*math.Max(scale, 1), "store %v %s", store, x.name)
				}
			}
		})
	}
}

// blockInput returns a (batch, seq, dim) tensor of normals.
func blockInput(seed uint64, dt autodiff.DType, batch, seq, dim int) *autodiff.Tensor {
	return autodiff.RandNormal(autodiff.NewRNG(seed), dt, 0, 1, batch, seq, dim)
}

var blockConfigs = []struct {
	name string
	cfg  BlockConfig
}{
	{"mha_bias_nopos", BlockConfig{Dim: 12, Heads: 3, QKVBias: true, OutBias: true, Causal: true}},
	{"gqa_rope", BlockConfig{Dim: 16, Heads: 4, KVHeads: 2, RoPE: &RoPEOptions{Base: 100}, Causal: true}},
	{"mqa_rope_interleaved_window", BlockConfig{Dim: 16, Heads: 4, KVHeads: 1, HeadDim: 6, RoPE: &RoPEOptions{Interleaved: true}, Causal: true, Window: 3, QKVBias: true}},
}

func TestBlockParams(t *testing.T) {
	b := NewBlock(autodiff.NewRNG(1), autodiff.Float64, BlockConfig{Dim: 16, Heads: 4, KVHeads: 2, HeadDim: 8, QKVBias: true})
	var names []string
	var shapes [][]int
	for _, p := range b.Params("self_attn.") {
		names = append(names, p.Name)
		shapes = append(shapes, p.Value.Shape())
	}
	assert.Equal(t, []string{
		"self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
		"self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
	}, names)
	assert.Equal(t, [][]int{{32, 16}, {32}, {16, 16}, {16}, {16, 16}, {16}, {16, 32}}, shapes)
	var lin []string
	for _, nl := range b.Linears("m.") {
		lin = append(lin, nl.Name)
	}
	assert.Equal(t, []string{"m.q_proj", "m.k_proj", "m.v_proj", "m.o_proj"}, lin)
	assert.Panics(t, func() { NewBlock(autodiff.NewRNG(1), autodiff.Float64, BlockConfig{Dim: 16, Heads: 4, KVHeads: 3}) })
}

// TestBlockMatchesComposition checks the block against the same computation
// spelt out with the reference ops: projections, RoPE, SDPA, output projection.
func TestBlockMatchesComposition(t *testing.T) {
	for _, bc := range blockConfigs {
		t.Run(bc.name, func(t *testing.T) {
			b := NewBlock(autodiff.NewRNG(2), autodiff.Float64, bc.cfg)
			x := blockInput(3, autodiff.Float64, 2, 7, bc.cfg.Dim)
			got := b.Forward(nil, x, nil)

			lin := func(l *layers.Linear, x *autodiff.Tensor) *autodiff.Tensor {
				return layers.LinearOp(x, l.Weight, l.Bias)
			}
			q := autodiff.Reshape(lin(b.Q, x), 2, 7, b.Heads, b.HeadDim)
			k := autodiff.Reshape(lin(b.K, x), 2, 7, b.KVHeads, b.HeadDim)
			v := autodiff.Reshape(lin(b.V, x), 2, 7, b.KVHeads, b.HeadDim)
			if b.RoPE != nil {
				q, k = RoPE(q, *b.RoPE), RoPE(k, *b.RoPE)
			}
			o := SDPA(q, k, v, Options{Causal: true, Window: b.Window})
			want := lin(b.O, autodiff.Reshape(o, 2, 7, b.Heads*b.HeadDim))
			require.Equal(t, want.Shape(), got.Shape())
			assert.InDeltaSlice(t, want.Float64s(), got.Float64s(), 1e-12)
		})
	}
}

func TestBlockGradCheck(t *testing.T) {
	for _, bc := range blockConfigs {
		t.Run(bc.name, func(t *testing.T) {
			b := NewBlock(autodiff.NewRNG(4), autodiff.Float64, bc.cfg)
			x := blockInput(5, autodiff.Float64, 2, 5, bc.cfg.Dim)
			inputs := []*autodiff.Tensor{x}
			for _, p := range b.Params("") {
				inputs = append(inputs, p.Value)
			}
			err := autodiff.GradCheck{Directions: 4}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
				return b.Forward(&layers.Ctx{Tape: in[0].Tape()}, in[0], nil)
			}, inputs...)
			assert.NoError(t, err)
		})
	}
}

// TestBlockFloat32Tiled runs the float32 block (whose attention runs on GEMM
// tiles from 16 queries on) against the float64 block with the same weights, values
// and gradients.
func TestBlockFloat32Tiled(t *testing.T) {
	// A wider block too: its projections are large enough for the packed GEMM
	// kernels, whose epilogue adds the query, key and value biases.
	wide := append(blockConfigs[:len(blockConfigs):len(blockConfigs)], struct {
		name string
		cfg  BlockConfig
	}{"mha_bias_wide", BlockConfig{Dim: 64, Heads: 2, QKVBias: true, OutBias: true, Causal: true}})
	for _, bc := range wide {
		t.Run(bc.name, func(t *testing.T) {
			b64 := NewBlock(autodiff.NewRNG(6), autodiff.Float64, bc.cfg)
			// Biases start at zero: give them values, so a bias lost on the
			// way shows.
			for i, l := range []*layers.Linear{b64.Q, b64.K, b64.V, b64.O} {
				if l.Bias != nil {
					l.Bias = autodiff.RandNormal(autodiff.NewRNG(uint64(20+i)), autodiff.Float64, 0, 1, l.Bias.Shape()...)
				}
			}
			b32 := &Block{Heads: b64.Heads, KVHeads: b64.KVHeads, HeadDim: b64.HeadDim, RoPE: b64.RoPE, Causal: b64.Causal, Window: b64.Window}
			cast := func(l *layers.Linear) *layers.Linear {
				c := &layers.Linear{Weight: autodiff.Cast(l.Weight, autodiff.Float32)}
				if l.Bias != nil {
					c.Bias = autodiff.Cast(l.Bias, autodiff.Float32)
				}
				return c
			}
			b32.Q, b32.K, b32.V, b32.O = cast(b64.Q), cast(b64.K), cast(b64.V), cast(b64.O)
			x64 := blockInput(7, autodiff.Float64, 2, 70, bc.cfg.Dim)
			x32 := autodiff.Cast(x64, autodiff.Float32)
			seed := blockInput(8, autodiff.Float64, 2, 70, bc.cfg.Dim)

			run := func(b *Block, x *autodiff.Tensor) (out []float64, grads [][]float64) {
				tp := autodiff.NewTape()
				defer tp.Release()
				y := b.Forward(&layers.Ctx{Tape: tp}, tp.Watch(x), nil)
				tp.BackwardWith(y, autodiff.Cast(seed, x.DType()))
				grads = append(grads, tp.Grad(x).Float64Values())
				for _, p := range b.Params("") {
					grads = append(grads, tp.Grad(p.Value).Float64Values())
				}
				return y.Float64Values(), grads
			}
			out64, g64 := run(b64, x64)
			out32, g32 := run(b32, x32)
			near32(t, out64, out32, "out")
			for i := range g64 {
				near32(t, g64[i], g32[i], fmt.Sprintf("gradient %d", i))
			}
		})
	}
}

// near32 asserts float32 results within 2e-5 of the largest float64 value (at
// least 1): the inputs are rounded to float32 and sums run in another order.
func near32(t *testing.T, want, got []float64, what string) {
	t.Helper()
	require.Equal(t, len(want), len(got), what)
	scale, worst := 1.0, 0.0
	for i := range want {
		scale = math.Max(scale, math.Abs(want[i]))
		worst = math.Max(worst, math.Abs(want[i]-got[i]))
	}
	assert.LessOrEqual(t, worst, 2e-5*scale, what)
}

// TestBlockKVCache feeds a sequence in pieces through a cache and compares with
// one pass over the whole sequence.
func TestBlockKVCache(t *testing.T) {
	for _, bc := range blockConfigs {
		t.Run(bc.name, func(t *testing.T) {
			b := NewBlock(autodiff.NewRNG(9), autodiff.Float64, bc.cfg)
			x := blockInput(10, autodiff.Float64, 2, 6, bc.cfg.Dim)
			want := b.Forward(nil, x, nil)
			cache := &ConcatCache{}
			defer cache.Reset()
			var got []*autodiff.Tensor
			for _, cut := range [][2]int{{0, 2}, {2, 3}, {3, 6}} {
				assert.Equal(t, cut[0], cache.Offset())
				got = append(got, b.Forward(nil, autodiff.Slice(x, 1, cut[0], cut[1]), cache))
			}
			assert.Equal(t, 6, cache.Offset())
			assert.InDeltaSlice(t, want.Float64s(), autodiff.Concat(1, got...).Float64s(), 1e-12)
		})
	}
}

// TestTiledAttentionOp checks the differentiable op on a tape against
// FlashAttention in float32, with GQA and a window.
func TestTiledAttentionOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	c := attnCase{B: 2, Tq: 70, Tk: 70, Hq: 4, Hkv: 2, D: 16, opt: Options{Causal: true, Window: 20}}
	a := newAttnData(rng, c)
	qs, ks, vs := c.shapes()
	q, k, v := autodiff.FromFloat32(a.q32, qs...), autodiff.FromFloat32(a.k32, ks...), autodiff.FromFloat32(a.v32, vs...)
	tp := autodiff.NewTape()
	defer tp.Release()
	out := tiledAttention(tp.Watch(q), tp.Watch(k), tp.Watch(v), c.opt)
	tp.BackwardWith(out, autodiff.FromFloat32(a.dout32, out.Shape()...))
	for _, x := range []struct {
		name string
		got  *autodiff.Tensor
		want []float64
	}{{"out", out, a.out}, {"dq", tp.Grad(q), a.dq}, {"dk", tp.Grad(k), a.dk}, {"dv", tp.Grad(v), a.dv}} {
		require.NotNil(t, x.got, x.name)
		err, scale := maxErr(x.got.Float32s(), x.want)
		assert.LessOrEqual(t, err, 1e-5*math.Max(scale, 1), x.name)
	}
}

// A llama-style attention block: 4 query heads sharing 2 key/value heads, RoPE,
// causal. In training the cache is nil; here a second call continues the first
// through a cache, as generation does.
func ExampleBlock() {
	rng := autodiff.NewRNG(1)
	b := NewBlock(rng, autodiff.Float32, BlockConfig{
		Dim: 32, Heads: 4, KVHeads: 2, RoPE: &RoPEOptions{Base: 10000}, Causal: true,
	})
	x := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, 1, 5, 32) // (batch, seq, dim)

	tp := autodiff.NewTape()
	y := b.Forward(&layers.Ctx{Tape: tp}, x, nil)
	tp.BackwardWith(y, autodiff.Full(autodiff.Float32, 1, y.Shape()...))
	fmt.Println("out", y.Shape(), "q_proj grad", tp.Grad(b.Q.Weight).Shape(), "k_proj grad", tp.Grad(b.K.Weight).Shape())
	tp.Release()

	cache := &ConcatCache{}
	b.Forward(nil, autodiff.Slice(x, 1, 0, 4), cache)
	next := b.Forward(nil, autodiff.Slice(x, 1, 4, 5), cache)
	fmt.Println("cached positions", cache.Offset(), "next", next.Shape())
	// Output:
	// out [1 5 32] q_proj grad [32 32] k_proj grad [16 32]
	// cached positions 5 next [1 1 32]
}

func ExampleConcatCache() {
	cache := &ConcatCache{}
	k := autodiff.Zeros(autodiff.Float32, 1, 3, 2, 8) // (batch, seq, kv heads, head dim)
	keys, _ := cache.Update(k, k)
	fmt.Println(cache.Offset(), keys.Shape())
	keys, _ = cache.Update(autodiff.Zeros(autodiff.Float32, 1, 1, 2, 8), autodiff.Zeros(autodiff.Float32, 1, 1, 2, 8))
	fmt.Println(cache.Offset(), keys.Shape())
	// Output:
	// 3 [1 3 2 8]
	// 4 [1 4 2 8]
}

// TestTileMul checks the tile products (AVX2 strips, their row tails, and the
// gemm fallback) against a float64 triple loop, for row-major and transposed A,
// overwriting and accumulating, with alpha 1 and not; column counts cover every
// block size of the AVX-512 and AVX2 strips (32, 16 and 8 columns).
func TestTileMul(t *testing.T) { bothPaths(t, testTileMul) }

func testTileMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for _, s := range []struct{ m, n, k int }{{64, 64, 32}, {64, 32, 64}, {7, 16, 5}, {3, 8, 1}, {5, 24, 130}, {6, 12, 9}, {1, 200, 3},
		{8, 56, 33}, {4, 40, 127}, {12, 128, 32}, {4, 120, 1}, {9, 48, 7}} {
		for _, trans := range []bool{false, true} {
			for _, acc := range []bool{false, true} {
				// alpha 1 takes the strips' path that skips the scaling.
				alpha := 0.5
				if acc == trans {
					alpha = 1
				}
				ldc, ldb := s.n+3, s.n+5
				ars, acs := s.k+2, 1
				if trans {
					ars, acs = 1, s.m+1
				}
				a := to32(normals(rng, (s.m-1)*ars+(s.k-1)*acs+1))
				b := to32(normals(rng, (s.k-1)*ldb+s.n))
				c := to32(normals(rng, (s.m-1)*ldc+s.n))
				want := to64(c)
				for i := range s.m {
					for j := range s.n {
						sum := 0.0
						for p := range s.k {
							sum += float64(a[i*ars+p*acs]) * float64(b[p*ldb+j])
						}
						if acc {
							want[i*ldc+j] += alpha * sum
						} else {
							want[i*ldc+j] = alpha * sum
						}
					}
				}
				tileMul(c, ldc, a, ars, acs, b, ldb, s.m, s.n, s.k, float32(alpha), acc)
				for i := range s.m {
					for j := s.n; j < ldc && i*ldc+j < len(c); j++ {
						require.Equal(t, float32(want[i*ldc+j]), c[i*ldc+j], "padding (%d,%d) untouched", i, j)
					}
					for j := range s.n {
						assert.InDelta(t, want[i*ldc+j], float64(c[i*ldc+j]), 1e-5*math.Sqrt(float64(s.k)), "%+v trans %v acc %v (%d,%d)", s, trans, acc, i, j)
					}
				}
			}
		}
	}
}

func TestLogTile(t *testing.T) {
	for x := float32(1); x < 1<<24; x *= 1.37 {
		// 2e-7 plus the rounding of the float32 result (|ln x| up to 16.6).
		assert.InDelta(t, math.Log(float64(x)), float64(logTile(x)), 2e-7+1.2e-7*math.Log(float64(x)), "ln %g", x)
	}
	for _, x := range []float32{1, 2, math.Sqrt2, 0.75, 1e-3} {
		assert.InDelta(t, math.Log(float64(x)), float64(logTile(x)), 2e-7, "ln %g", x)
	}
}

func ExampleNewBlock() {
	b := NewBlock(autodiff.NewRNG(1), autodiff.Float32, BlockConfig{Dim: 64, Heads: 8, KVHeads: 2, Causal: true, Window: 256, QKVBias: true})
	for _, p := range b.Params("self_attn.") {
		fmt.Println(p.Name, p.Value.Shape())
	}
	// Output:
	// self_attn.q_proj.weight [64 64]
	// self_attn.q_proj.bias [64]
	// self_attn.k_proj.weight [16 64]
	// self_attn.k_proj.bias [16]
	// self_attn.v_proj.weight [16 64]
	// self_attn.v_proj.bias [16]
	// self_attn.o_proj.weight [64 64]
}

// GPT-2's attention: every projection with a bias, no rotary embeddings (the
// model adds learned positions), o_proj initialised smaller for depth.
func ExampleBlockConfig() {
	cfg := BlockConfig{
		Dim: 128, Heads: 4, QKVBias: true, OutBias: true, Causal: true,
		Init: layers.Init{Std: 0.02}, OutInit: layers.Init{Std: 0.02 / 2.83},
	}
	b := NewBlock(autodiff.NewRNG(1), autodiff.Float32, cfg)
	fmt.Println(b.Heads, b.KVHeads, b.HeadDim, b.RoPE == nil)
	// Output: 4 4 32 true
}

// Attend stops before o_proj, for callers that fuse o_proj with what follows.
func ExampleBlock_Attend() {
	b := NewBlock(autodiff.NewRNG(1), autodiff.Float32, BlockConfig{Dim: 32, Heads: 4, HeadDim: 16, Causal: true})
	x := autodiff.Zeros(autodiff.Float32, 2, 3, 32)
	fmt.Println(b.Attend(nil, x, nil).Shape(), b.Forward(nil, x, nil).Shape())
	// Output: [2 3 64] [2 3 32]
}

// A KVCache only has to report its length and append: here one that counts the
// tokens it was given on top of a ConcatCache.
type countingCache struct {
	ConcatCache
	calls int
}

func (c *countingCache) Update(k, v *autodiff.Tensor) (*autodiff.Tensor, *autodiff.Tensor) {
	c.calls++
	return c.ConcatCache.Update(k, v)
}

func ExampleKVCache() {
	b := NewBlock(autodiff.NewRNG(1), autodiff.Float32, BlockConfig{Dim: 16, Heads: 2, Causal: true, RoPE: &RoPEOptions{}})
	var cache KVCache = &countingCache{}
	for _, n := range []int{4, 1, 1} {
		b.Forward(nil, autodiff.Zeros(autodiff.Float32, 1, n, 16), cache)
	}
	fmt.Println(cache.Offset(), cache.(*countingCache).calls)
	// Output: 6 3
}

// TestBlockFloat32Cache prefills a float32 cache in chunks of at least 16 tokens
// (the tiled kernels with fewer queries than keys) and then decodes single
// tokens (flash), against one pass over the whole sequence.
func TestBlockFloat32Cache(t *testing.T) {
	for _, bc := range blockConfigs {
		t.Run(bc.name, func(t *testing.T) {
			b := NewBlock(autodiff.NewRNG(11), autodiff.Float32, bc.cfg)
			x := blockInput(12, autodiff.Float32, 2, 50, bc.cfg.Dim)
			want := b.Forward(nil, x, nil).Float64Values()
			cache := &ConcatCache{}
			defer cache.Reset()
			var got []float64
			for _, cut := range [][2]int{{0, 20}, {20, 48}, {48, 49}, {49, 50}} {
				y := b.Forward(nil, autodiff.Slice(x, 1, cut[0], cut[1]), cache)
				got = append(got, y.Float64Values()...)
			}
			// got is in chunk order; reorder want the same way (batch-major within each chunk).
			var wantChunks []float64
			for _, cut := range [][2]int{{0, 20}, {20, 48}, {48, 49}, {49, 50}} {
				for bi := range 2 {
					wantChunks = append(wantChunks, want[(bi*50+cut[0])*bc.cfg.Dim:(bi*50+cut[1])*bc.cfg.Dim]...)
				}
			}
			near32(t, wantChunks, got, "cached")
		})
	}
}

// nans returns n float32 NaNs.
func nans(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}

// TestGatherScatter checks the row copies of the tiled kernels (AVX2 for whole
// vectors, Go otherwise) against plain indexing, and that scatter leaves the
// elements between rows alone.
func TestGatherScatter(t *testing.T) { bothPaths(t, testGatherScatter) }

func testGatherScatter(t *testing.T) {
	for _, width := range []int{1, 6, 8, 24, 80} {
		for _, rows := range []int{0, 1, 5, 9} {
			stride, off := width+13, 7
			src := make([]float32, off+rows*stride+3)
			for i := range src {
				src[i] = float32(i)
			}
			dst := nans(rows * width)
			gather(dst, width, src, off, stride, rows)
			for r := range rows {
				for c := range width {
					require.Equal(t, src[off+r*stride+c], dst[r*width+c], "gather width %d rows %d [%d,%d]", width, rows, r, c)
				}
			}
			back := make([]float32, len(src))
			for i := range back {
				back[i] = -1
			}
			scatter(back, off, stride, dst, width, rows)
			for i, v := range back {
				r, c := (i-off)/stride, (i-off)%stride
				if i >= off && r < rows && c < width {
					require.Equal(t, src[i], v, "scatter width %d rows %d at %d", width, rows, i)
				} else {
					require.Equal(t, float32(-1), v, "scatter width %d rows %d wrote %d", width, rows, i)
				}
			}
		}
	}
}

// TestProbStoreOnlyWhenMostlyUsed checks that the forward keeps a probability
// store only when at least a quarter of it holds probabilities: at 16 tokens
// its 64×128 tiles would be 98% padding.
func TestProbStoreOnlyWhenMostlyUsed(t *testing.T) {
	for _, c := range []struct {
		batch, heads, q, k int
		want               bool
	}{{16, 4, 128, 128, true}, {16, 4, 64, 64, true}, {2, 1, 100, 100, true}, {256, 4, 16, 16, false}, {16, 4, 33, 33, false}, {16, 4, 1, 128, false}, {1, 1, 0, 0, false}} {
		d := Dims{Batch: c.batch, QHeads: c.heads, KVHeads: c.heads, QLen: c.q, KLen: c.k, HeadDim: 32, VDim: 32}
		saved, ps := probStore(d, Options{Causal: c.q == c.k}, true)
		assert.Equal(t, c.want, ps != nil, "%+v", c)
		if c.want {
			require.Len(t, saved, 1)
			used := c.batch * c.heads * c.q * c.k
			assert.GreaterOrEqual(t, 4*used, len(ps), "%+v", c)
			saved[0].Release()
		}
	}
}

// The tiled kernels take their workers' scratch from pools: stale values there
// (NaN here, in scratch larger than the cases need) must never reach a result.
func TestTiledPooledScratchIsWrittenFirst(t *testing.T) {
	poison := func() {
		const big = 4 * flashQBlock * tiledKBlock
		for range 4 {
			f := &tiledFwdScratch{
				m: nans(big), l: nans(big), s: nans(big), acc: nans(big), qc: nans(big), vc: nans(big),
				ktBuf: nans(big), accSet: make([]bool, big),
			}
			b := &tiledScratch{
				p: nans(big), ds: nans(big), qc: nans(big), oc: nans(big), kc: nans(big), dk: nans(big), dv: nans(big),
				ktBuf: nans(big), vtBuf: nans(big), dqSet: make([]bool, big), dkSet: make([]bool, big), dvSet: make([]bool, big),
			}
			for i := range big {
				f.accSet[i], b.dqSet[i], b.dkSet[i], b.dvSet[i] = true, true, true, true
			}
			// Cached visible ranges of tiles the cases have, all wrong.
			for _, c := range []*visCache{&f.vis, &b.vis} {
				for i := range c.t {
					c.t[i] = visTile{i0: 0, rows: 64 - i*57, j0: 0, j1: 64 - i*57, lo: make([]int, 64), hi: make([]int, 64), sc: make([]int, 16)}
				}
			}
			tiledFwdPool.Put(f)
			tiledBwdPool.Put(b)
		}
	}
	for _, threads := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(threads, " threads"), func(t *testing.T) {
			defer metal.SetThreads(metal.Threads())
			metal.SetThreads(threads)
			poison()
			testTiledMatchesReference(t, tileEdgeCases)
		})
	}
}
