package quant_test

import (
	"encoding/json"
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/quant"
)

func ExampleQuantize() {
	// One group of 32 weights: 0, 1, 2, 3 repeated. The larger end, 3, is the
	// edge: the scale is negative, the bias is 3, and q = 3 − w.
	w := make([]float32, 32)
	for i := range w {
		w[i] = float32(i % 4)
	}
	m, err := quant.Quantize(quant.Params{GroupSize: 32, Bits: 2}, w, 1, 32)
	if err != nil {
		panic(err)
	}
	fmt.Printf("scale %g bias %g words %#x\n", m.Scales[0], m.Biases[0], m.Packed)
	fmt.Println(m.Dequantize()[:4])
	// Output:
	// scale -1 bias 3 words [0x1b1b1b1b 0x1b1b1b1b]
	// [0 1 2 3]
}

func ExampleMatMulT() {
	w := make([]float32, 2*64)
	for i := range w {
		w[i] = float32(i%64) / 64
	}
	m, _ := quant.Quantize(quant.Params{GroupSize: 64, Bits: 8}, w, 2, 64)
	x := make([]float32, 64)
	x[63] = 1 // picks column 63 of each row
	y := make([]float32, 2)
	quant.MatMulT(y, x, 1, m)
	fmt.Printf("%.3f\n", y)
	// Output: [0.984 0.984]
}

func ExampleQuantizeLinear() {
	l := layers.NewLinear(autodiff.NewRNG(1), autodiff.Float32, 64, 3, false, layers.Init{})
	if err := quant.QuantizeLinear(l, quant.Params{GroupSize: 64, Bits: 4}); err != nil {
		panic(err)
	}
	for _, p := range l.Params("proj.") {
		fmt.Println(p.Name, p.Value.DType(), p.Value.Shape())
	}
	y := l.Forward(nil, autodiff.Zeros(autodiff.Float32, 5, 64))
	fmt.Println(y.Shape())
	// Output:
	// proj.weight uint32 [3 8]
	// proj.scales float32 [3 1]
	// proj.biases float32 [3 1]
	// [5 3]
}

func ExampleConfig() {
	var c quant.Config
	_ = json.Unmarshal([]byte(`{"group_size": 64, "bits": 4, "lm_head": false,
		"model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 8}}`), &c)
	for _, path := range []string{"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "lm_head"} {
		p, ok := c.For(path)
		fmt.Println(path, ok, p.Bits, p.GroupSize)
	}
	out, _ := json.Marshal(c)
	fmt.Println(string(out))
	// Output:
	// model.layers.0.self_attn.q_proj true 4 64
	// model.layers.0.mlp.down_proj true 8 32
	// lm_head false 0 0
	// {"group_size":64,"bits":4,"lm_head":false,"model.layers.0.mlp.down_proj":{"group_size":32,"bits":8}}
}
