package models

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/quant"
)

// QuantTarget is a module that affine quantization may replace: the token
// embedding ("model.embed_tokens") or a linear layer of [Model.Linears]. Exactly
// one of Linear and Embedding is set.
type QuantTarget struct {
	Name      string
	Linear    *layers.Linear
	Embedding *layers.Embedding
}

// Packed is the target's quantized weight, or nil while it is float.
func (t QuantTarget) Packed() layers.PackedWeight {
	if t.Linear != nil {
		return t.Linear.Packed
	}
	return t.Embedding.Packed
}

// Weight is the target's float weight (rows, cols), or nil once quantized.
func (t QuantTarget) Weight() *autodiff.Tensor {
	if t.Linear != nil {
		return t.Linear.Weight
	}
	return t.Embedding.Weight
}

// Cols is the width quantization groups run along (the input width).
func (t QuantTarget) Cols() int {
	if p := t.Packed(); p != nil {
		_, c := p.Dims()
		return c
	}
	return t.Weight().Dim(1)
}

// QuantTargets lists the modules that quantization may replace, as MLX's
// nn.quantize sees them: the token embedding, then every linear layer. Learned
// position embeddings are not among them (they stay float).
func (m *Model) QuantTargets() []QuantTarget {
	ts := []QuantTarget{{Name: "model.embed_tokens", Embedding: m.Embed}}
	for _, nl := range m.Linears() {
		ts = append(ts, QuantTarget{Name: nl.Name, Linear: nl.Linear})
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
		w := t.Weight()
		pw, err := quant.NewWeight(p, w.Dim(0), w.Dim(1))
		if err != nil {
			return fmt.Errorf("models: config: quantization of %s: %w", t.Name, err)
		}
		w.Release()
		if t.Linear != nil {
			t.Linear.Weight, t.Linear.Packed = nil, pw
		} else {
			t.Embedding.Weight, t.Embedding.Packed = nil, pw
		}
	}
	return nil
}

// embed is the token embedding plus learned positions: one fused pass when the
// table is float, a quantized lookup and an addition when it is packed.
func (m *Model) embed(c *layers.Ctx, pos, ids *autodiff.Tensor, offset int) *autodiff.Tensor {
	if m.Embed.Packed == nil {
		return embedPositions(c.Param(m.Embed.Weight), pos, ids, offset)
	}
	x := m.Embed.Forward(c, ids)
	if pos != nil {
		p := autodiff.Slice(pos, 0, offset, offset+ids.Dim(1))
		x = autodiff.Add(x, p)
	}
	return x
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
		pw, err := quant.QuantizeTensor(p, w)
		if err != nil {
			return nil, fmt.Errorf("models: Quantize %s: %w", t.Name, err)
		}
		r.Params, r.Quantized, r.BytesAfter = p, true, pw.Bytes()
		d := pw.Matrix.Dequantize()
		var se float64
		for i, v := range w.Float32s() {
			e := float64(d[i] - v)
			se += e * e
			r.MaxAbs = max(r.MaxAbs, math.Abs(e))
		}
		r.RMSE = math.Sqrt(se / float64(max(1, len(d))))
		w.Release()
		if t.Linear != nil {
			t.Linear.Weight, t.Linear.Packed = nil, pw
		} else {
			t.Embedding.Weight, t.Embedding.Packed = nil, pw
		}
		reports = append(reports, r)
	}
	m.Config.SetQuantization(&out)
	return reports, nil
}

// Dequantize turns every quantized module back into float32 and removes
// "quantization" from the config.
func (m *Model) Dequantize() {
	for _, t := range m.QuantTargets() {
		if t.Linear != nil {
			quant.DequantizeLinear(t.Linear)
		} else {
			quant.DequantizeEmbedding(t.Embedding)
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
		scales, packed := sd[t.Name+".scales"], t.Packed() != nil
		switch {
		case scales != nil:
			w := sd[t.Name+".weight"]
			if w == nil || w.Rank() != 2 || scales.Rank() != 2 || w.Dim(0) != scales.Dim(0) || scales.Dim(1) == 0 {
				continue // LoadStateDict reports what is missing or malformed
			}
			rows, cols := w.Dim(0), t.Cols()
			if cols%scales.Dim(1) != 0 || w.Dim(1)*32%cols != 0 {
				return fmt.Errorf("models: %s: packed weight %v and scales %v do not fit a width of %d", t.Name, w.Shape(), scales.Shape(), cols)
			}
			p := quant.Params{GroupSize: cols / scales.Dim(1), Bits: w.Dim(1) * 32 / cols}
			if packed {
				if pw, ok := t.Packed().(*quant.Weight); ok && pw.Matrix.Params == p {
					continue
				}
			}
			pw, err := quant.NewWeight(p, rows, cols)
			if err != nil {
				return fmt.Errorf("models: %s: %w", t.Name, err)
			}
			if !packed {
				t.Weight().Release()
			}
			if t.Linear != nil {
				t.Linear.Weight, t.Linear.Packed = nil, pw
			} else {
				t.Embedding.Weight, t.Embedding.Packed = nil, pw
			}
		case packed:
			rows, cols := t.Packed().Dims()
			w := autodiff.Zeros(autodiff.Float32, rows, cols)
			if t.Linear != nil {
				t.Linear.Weight, t.Linear.Packed = w, nil
			} else {
				t.Embedding.Weight, t.Embedding.Packed = w, nil
			}
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
		pw, ok := t.Packed().(*quant.Weight)
		if !ok {
			continue
		}
		if q == nil {
			q = &quant.Config{Params: pw.Matrix.Params, Layers: map[string]*quant.Params{}}
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
		pw, ok := t.Packed().(*quant.Weight)
		switch {
		case !ok:
			q.Layers[t.Name] = nil
		case pw.Matrix.Params != q.Params:
			p := pw.Matrix.Params
			q.Layers[t.Name] = &p
		}
	}
	m.Config.SetQuantization(q)
}
