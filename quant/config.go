package quant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Config is config.json's "quantization" object in MLX's convention: the
// default group_size and bits, and overrides keyed by module path, each either
// its own {"group_size", "bits"} or false (the module stays in float):
//
//	"quantization": {
//	    "group_size": 64, "bits": 4,
//	    "model.embed_tokens": false,
//	    "lm_head": {"group_size": 64, "bits": 8}
//	}
//
// A "mode" key, which newer MLX writes, must be "affine" (the only mode here).
type Config struct {
	Params
	Layers map[string]*Params // nil: kept in float
}

// For returns the parameters of the module at path and whether it is quantized.
func (c *Config) For(path string) (Params, bool) {
	if c == nil {
		return Params{}, false
	}
	if p, ok := c.Layers[path]; ok {
		if p == nil {
			return Params{}, false
		}
		return *p, true
	}
	return c.Params, true
}

// Validate checks the default and every override.
func (c *Config) Validate() error {
	if err := c.Params.Validate(); err != nil {
		return fmt.Errorf("quantization: %w", err)
	}
	for path, p := range c.Layers {
		if p != nil {
			if err := p.Validate(); err != nil {
				return fmt.Errorf("quantization: %s: %w", path, err)
			}
		}
	}
	return nil
}

// MarshalJSON writes group_size and bits, then the overrides sorted by path.
func (c Config) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"group_size":%d,"bits":%d`, c.GroupSize, c.Bits)
	paths := make([]string, 0, len(c.Layers))
	for p := range c.Layers {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		k, _ := json.Marshal(path)
		b.WriteByte(',')
		b.Write(k)
		if p := c.Layers[path]; p == nil {
			b.WriteString(":false")
		} else {
			fmt.Fprintf(&b, `:{"group_size":%d,"bits":%d}`, p.GroupSize, p.Bits)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads the MLX form; a missing group_size or bits takes MLX's
// default (64, 4).
func (c *Config) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("quantization: %w", err)
	}
	*c = Config{Params: Params{GroupSize: DefaultGroupSize, Bits: DefaultBits}}
	for k, v := range raw {
		switch k {
		case "group_size":
			if err := json.Unmarshal(v, &c.GroupSize); err != nil {
				return fmt.Errorf("quantization: group_size: %w", err)
			}
		case "bits":
			if err := json.Unmarshal(v, &c.Bits); err != nil {
				return fmt.Errorf("quantization: bits: %w", err)
			}
		case "mode":
			var mode string
			if err := json.Unmarshal(v, &mode); err != nil || mode != "affine" {
				return fmt.Errorf("quantization: mode %s: only \"affine\" is supported", v)
			}
		default:
			if c.Layers == nil {
				c.Layers = map[string]*Params{}
			}
			s := strings.TrimSpace(string(v))
			switch {
			case s == "false":
				c.Layers[k] = nil
			case s == "true":
				// MLX's predicate may say true: the defaults.
			default:
				p := Params{GroupSize: DefaultGroupSize, Bits: DefaultBits}
				if err := json.Unmarshal(v, &p); err != nil {
					return fmt.Errorf("quantization: %s: want false or {\"group_size\", \"bits\"}: %w", k, err)
				}
				c.Layers[k] = &p
			}
		}
	}
	return nil
}
