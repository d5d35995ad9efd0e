package models

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/quant"
)

// QuantTarget is a module that affine quantization may replace: the token
// embedding ("model.embed_tokens"), a linear layer of [Model.Linears], or one
// projection of a mixture of experts' stacked experts
// ("model.layers.{i}.mlp.switch_mlp.{gate,up,down}_proj", MLX's
// QuantizedSwitchLinear). Exactly one of Linear, Embedding and Experts is set.
type QuantTarget struct {
	Name      string
	Linear    *layers.Linear
	Embedding *layers.Embedding
	Experts   *advanced.MoE
	Proj      string // with Experts: "gate_proj", "up_proj" or "down_proj"
}

func (t QuantTarget) expertFields() (**autodiff.Tensor, *advanced.PackedExperts) {
	switch t.Proj {
	case "gate_proj":
		return &t.Experts.GateProj, &t.Experts.GatePacked
	case "up_proj":
		return &t.Experts.UpProj, &t.Experts.UpPacked
	}
	return &t.Experts.DownProj, &t.Experts.DownPacked
}

// Packed is the target's quantized weight (a *quant.Weight, or *quant.Experts
// for experts), or nil while it is float.
func (t QuantTarget) Packed() any {
	switch {
	case t.Linear != nil && t.Linear.Packed != nil:
		return t.Linear.Packed
	case t.Embedding != nil && t.Embedding.Packed != nil:
		return t.Embedding.Packed
	case t.Experts != nil:
		if _, p := t.expertFields(); *p != nil {
			return *p
		}
	}
	return nil
}

// packedParams are the parameters of the target's quantized weight, if any.
func (t QuantTarget) packedParams() (quant.Params, bool) {
	switch p := t.Packed().(type) {
	case *quant.Weight:
		return p.Matrix.Params, true
	case *quant.Experts:
		return p.Quant, true
	}
	return quant.Params{}, false
}

// Weight is the target's float weight ((rows, cols), or (experts, rows, cols)),
// or nil once quantized.
func (t QuantTarget) Weight() *autodiff.Tensor {
	switch {
	case t.Linear != nil:
		return t.Linear.Weight
	case t.Embedding != nil:
		return t.Embedding.Weight
	}
	w, _ := t.expertFields()
	return *w
}

// shape is the float weight's shape.
func (t QuantTarget) shape() []int {
	switch p := t.Packed().(type) {
	case *quant.Weight:
		return []int{p.Rows, p.Cols}
	case *quant.Experts:
		return []int{p.E, p.Rows, p.Cols}
	}
	return t.Weight().Shape()
}

// Cols is the width quantization groups run along (the input width).
func (t QuantTarget) Cols() int {
	sh := t.shape()
	return sh[len(sh)-1]
}

// setPacked puts pw (*quant.Weight or *quant.Experts) in place of the float
// weight, which it releases.
func (t QuantTarget) setPacked(pw any) {
	if w := t.Weight(); w != nil {
		w.Release()
	}
	switch {
	case t.Linear != nil:
		t.Linear.Weight, t.Linear.Packed = nil, pw.(*quant.Weight)
	case t.Embedding != nil:
		t.Embedding.Weight, t.Embedding.Packed = nil, pw.(*quant.Weight)
	default:
		w, p := t.expertFields()
		*w, *p = nil, pw.(*quant.Experts)
	}
}

// setWeight puts the float weight w in place of the quantized one.
func (t QuantTarget) setWeight(w *autodiff.Tensor) {
	switch {
	case t.Linear != nil:
		t.Linear.Weight, t.Linear.Packed = w, nil
	case t.Embedding != nil:
		t.Embedding.Weight, t.Embedding.Packed = w, nil
	default:
		fw, p := t.expertFields()
		*fw, *p = w, nil
	}
}

// newPacked returns an all-zero quantized weight of the target's shape.
func (t QuantTarget) newPacked(p quant.Params) (any, error) {
	sh := t.shape()
	if len(sh) == 3 {
		return quant.NewExperts(p, sh[0], sh[1], sh[2])
	}
	return quant.NewWeight(p, sh[0], sh[1])
}

// quantized returns the target's float weight quantized with p, its size and
// its dequantized values.
func (t QuantTarget) quantized(p quant.Params) (any, int64, *autodiff.Tensor, error) {
	w := t.Weight()
	if w.Rank() == 3 {
		x, err := quant.QuantizeExperts(p, w)
		if err != nil {
			return nil, 0, nil, err
		}
		return x, x.Bytes(), x.Dequantize(autodiff.Float32), nil
	}
	x, err := quant.QuantizeTensor(p, w)
	if err != nil {
		return nil, 0, nil, err
	}
	return x, x.Bytes(), x.Dequantize(autodiff.Float32), nil
}

// dequantized is the float32 weight the quantized one stands for.
func (t QuantTarget) dequantized() *autodiff.Tensor {
	switch p := t.Packed().(type) {
	case *quant.Weight:
		return p.Dequantize(autodiff.Float32)
	case *quant.Experts:
		return p.Dequantize(autodiff.Float32)
	}
	return nil
}

// QuantTargets lists the modules that quantization may replace, as MLX's
// nn.quantize sees them: the token embedding, every linear layer, then the
// experts' stacked projections of each mixture of experts. Learned position
// embeddings are not among them (they stay float).
func (m *Model) QuantTargets() []QuantTarget {
	ts := []QuantTarget{{Name: "model.embed_tokens", Embedding: m.Embed}}
	for _, nl := range m.Linears() {
		ts = append(ts, QuantTarget{Name: nl.Name, Linear: nl.Linear})
	}
	for i, l := range m.Layers {
		moe, ok := l.FeedForward.(*advanced.MoE)
		if !ok {
			continue
		}
		for _, proj := range []string{"gate_proj", "up_proj", "down_proj"} {
			t := QuantTarget{Name: fmt.Sprintf("model.layers.%d.%s.switch_mlp.%s", i, l.FeedForwardName, proj), Experts: moe, Proj: proj}
			if t.Weight() != nil || t.Packed() != nil {
				ts = append(ts, t)
			}
		}
	}
	return ts
}

// Quantization returns config.json's "quantization" (MLX's convention, see
// quant.Config), or nil when the model is not quantized.
func (c Config) Quantization() (*quant.Config, error) {
	raw, ok := c.Extra["quantization"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var q quant.Config
	if err := json.Unmarshal(raw, &q); err != nil {
		return nil, fmt.Errorf("models: config: %w", err)
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("models: config: %w", err)
	}
	return &q, nil
}

// SetQuantization records q as config.json's "quantization" (nil removes it).
func (c *Config) SetQuantization(q *quant.Config) {
	if q == nil {
		delete(c.Extra, "quantization")
		return
	}
	raw, _ := json.Marshal(q)
	if c.Extra == nil {
		c.Extra = map[string]json.RawMessage{}
	}
	c.Extra["quantization"] = raw
}

// Quantizes reports whether q quantizes target t, and with which parameters:
// q says so (its default or t's override) and t's width is a multiple of the
// group size (MLX's nn.quantize skips the others).
func Quantizes(q *quant.Config, t QuantTarget) (quant.Params, bool) {
	p, ok := q.For(t.Name)
	if !ok || t.Cols()%p.GroupSize != 0 {
		return quant.Params{}, false
	}
	return p, true
}

// packForConfig gives a model built from a quantized config.json empty
// quantized weights where the checkpoint has them, so that LoadStateDict
// finds weight (uint32), scales and biases under each quantized module.
func (m *Model) packForConfig() error {
	q, err := m.Config.Quantization()
	if err != nil || q == nil {
		return err
	}
	if m.Config.DType() != autodiff.Float32 {
		return fmt.Errorf("models: config: quantization needs torch_dtype float32")
	}
	for _, t := range m.QuantTargets() {
		p, ok := Quantizes(q, t)
		if !ok {
			continue
		}
		pw, err := t.newPacked(p)
		if err != nil {
			return fmt.Errorf("models: config: quantization of %s: %w", t.Name, err)
		}
		t.setPacked(pw)
	}
	return nil
}

// embed is the token embedding plus learned positions: one fused pass when the
// table is float, a quantized lookup and an addition when it is packed.
func (m *Model) embed(c *layers.Ctx, pos, ids *autodiff.Tensor, offset int, rows []int) *autodiff.Tensor {
	switch {
	case m.Embed.Packed != nil:
		return m.embedPacked(c, pos, ids, offset, rows)
	case rows != nil:
		return embedRows(c.Param(m.Embed.Weight), pos, ids, rows)
	}
	return embedPositions(c.Param(m.Embed.Weight), pos, ids, offset)
}

// embedPacked looks ids (batch, seq) up in the quantized token table and adds
// the learned positions pos (nil: none; as the forward pass uses it) of
// offset…offset+seq−1, or, when rows is not nil, of rows[b]… for batch row b
// (a cache of rows at different positions).
func (m *Model) embedPacked(c *layers.Ctx, pos, ids *autodiff.Tensor, offset int, rows []int) *autodiff.Tensor {
	x := m.Embed.Forward(c, ids)
	if pos == nil {
		return x
	}
	bs, t := ids.Dim(0), ids.Dim(1)
	if rows == nil {
		return autodiff.Add(x, autodiff.Slice(pos, 0, offset, offset+t))
	}
	at := make([]int32, 0, bs*t)
	for b := range bs {
		for i := range t {
			at = append(at, int32(rows[b]+i))
		}
	}
	idx := autodiff.FromInt32(at, bs, t)
	defer idx.Release()
	return autodiff.Add(x, autodiff.Embedding(pos, idx))
}

// QuantReport describes what quantization did to one target.
type QuantReport struct {
	Name        string
	Params      quant.Params // zero when kept in float
	Quantized   bool
	RMSE        float64 // root mean square of dequantized − original
	MaxAbs      float64 // largest |dequantized − original|
	BytesBefore int64   // the float weight
	BytesAfter  int64   // packed weight, scales and biases (or the float weight)
}

// Quantize quantizes m in place with q: every target q quantizes (see
// [Quantizes]) unless keep(name) says to leave it in float. The config gains
// "quantization": q plus an explicit false for each target left in float (as
// MLX reads it: a module path mapped to false stays float), so a model built
// from the saved config.json has the same layout. Each target's error is
// reported. m must be float32 and not quantized yet.
func (m *Model) Quantize(q quant.Config, keep func(name string) bool) ([]QuantReport, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if m.Config.DType() != autodiff.Float32 {
		return nil, fmt.Errorf("models: Quantize: the model is %s, want float32", m.Config.DType())
	}
	if old, _ := m.Config.Quantization(); old != nil {
		return nil, fmt.Errorf("models: Quantize: the model is already quantized")
	}
	out := q
	out.Layers = map[string]*quant.Params{}
	for k, v := range q.Layers {
		out.Layers[k] = v
	}
	if m.Positions != nil {
		out.Layers["model.embed_positions"] = nil // learned positions stay float
	}
	var reports []QuantReport
	for _, t := range m.QuantTargets() {
		if t.Packed() != nil {
			return nil, fmt.Errorf("models: Quantize: %s is already quantized", t.Name)
		}
	}
	for _, t := range m.QuantTargets() {
		w := t.Weight()
		r := QuantReport{Name: t.Name, BytesBefore: int64(w.Len() * w.DType().Size())}
		p, ok := Quantizes(&q, t)
		if !ok || keep != nil && keep(t.Name) {
			out.Layers[t.Name] = nil
			r.BytesAfter = r.BytesBefore
			reports = append(reports, r)
			continue
		}
		pw, size, d, err := t.quantized(p)
		if err != nil {
			return nil, fmt.Errorf("models: Quantize %s: %w", t.Name, err)
		}
		r.Params, r.Quantized, r.BytesAfter = p, true, size
		var se float64
		for i, v := range w.Float32s() {
			e := float64(d.Float32s()[i] - v)
			se += e * e
			r.MaxAbs = max(r.MaxAbs, math.Abs(e))
		}
		r.RMSE = math.Sqrt(se / float64(max(1, d.Len())))
		d.Release()
		t.setPacked(pw)
		reports = append(reports, r)
	}
	m.Config.SetQuantization(&out)
	return reports, nil
}

// Dequantize turns every quantized module back into float32 and removes
// "quantization" from the config.
func (m *Model) Dequantize() {
	for _, t := range m.QuantTargets() {
		if d := t.dequantized(); d != nil {
			t.setWeight(d)
		}
	}
	m.Config.SetQuantization(nil)
}

// matchQuantization makes m's modules packed or float as the state dict sd
// has them, before LoadStateDict checks names and shapes: MLX marks a
// quantized module by "<path>.scales" in the weights (a checkpoint's config
// need not list the modules its quantization skipped), so a target with scales
// in sd becomes packed, with bits and group size read from the shapes, and a
// packed target without them becomes float32 again (its values then load).
func (m *Model) matchQuantization(sd map[string]*autodiff.Tensor) error {
	for _, t := range m.QuantTargets() {
		scales := sd[t.Name+".scales"]
		have, packed := t.packedParams()
		switch {
		case scales != nil:
			sh := t.shape()
			w := sd[t.Name+".weight"]
			n := len(sh)
			if w == nil || w.Rank() != n || scales.Rank() != n || scales.Dim(n-1) == 0 || !sameShape(w.Shape()[:n-1], sh[:n-1]) || !sameShape(scales.Shape()[:n-1], sh[:n-1]) {
				continue // LoadStateDict reports what is missing or malformed
			}
			cols := sh[n-1]
			if cols%scales.Dim(n-1) != 0 || w.Dim(n-1)*32%cols != 0 {
				return fmt.Errorf("models: %s: packed weight %v and scales %v do not fit a width of %d", t.Name, w.Shape(), scales.Shape(), cols)
			}
			p := quant.Params{GroupSize: cols / scales.Dim(n-1), Bits: w.Dim(n-1) * 32 / cols}
			if packed && have == p {
				continue
			}
			pw, err := t.newPacked(p)
			if err != nil {
				return fmt.Errorf("models: %s: %w", t.Name, err)
			}
			t.setPacked(pw)
		case packed:
			t.setWeight(autodiff.Zeros(autodiff.Float32, t.shape()...))
		}
	}
	m.syncQuantization()
	return nil
}

// syncQuantization makes the config's "quantization" describe the modules as
// they are: none when nothing is packed; otherwise the config's default (or the
// first packed module's parameters), an override for each packed module that
// differs and false for each float one.
func (m *Model) syncQuantization() {
	old, _ := m.Config.Quantization()
	var q *quant.Config
	for _, t := range m.QuantTargets() {
		if p, ok := t.packedParams(); ok && q == nil {
			q = &quant.Config{Params: p, Layers: map[string]*quant.Params{}}
			if old != nil {
				q.Params = old.Params
			}
		}
	}
	if q == nil {
		if old != nil {
			m.Config.SetQuantization(nil)
		}
		return
	}
	if m.Positions != nil {
		q.Layers["model.embed_positions"] = nil
	}
	for _, t := range m.QuantTargets() {
		p, ok := t.packedParams()
		switch {
		case !ok:
			q.Layers[t.Name] = nil
		case p != q.Params:
			q.Layers[t.Name] = &p
		}
	}
	m.Config.SetQuantization(q)
}
