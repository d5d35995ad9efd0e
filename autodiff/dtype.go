package autodiff

import "fmt"

// DType is the element type of a tensor.
type DType uint8

// The dtypes. Float32 is for training math; Float64 for reference kernels and
// gradient checks; Float16 and BFloat16 are storage (cast to compute); Int32
// holds token ids and indices; Uint32 holds packed quantized weights.
const (
	Float32 DType = iota
	Float64
	Float16
	BFloat16
	Int32
	Uint32
)

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case Float64:
		return 8
	case Float16, BFloat16:
		return 2
	default:
		return 4
	}
}

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	case Int32:
		return "int32"
	case Uint32:
		return "uint32"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// IsFloat reports whether ops can compute in the dtype directly (float32, float64).
func (d DType) IsFloat() bool { return d == Float32 || d == Float64 }

// ParseDType reads a dtype name as config files spell it.
func ParseDType(s string) (DType, error) {
	switch s {
	case "float32", "f32", "fp32":
		return Float32, nil
	case "float64", "f64", "fp64":
		return Float64, nil
	case "float16", "f16", "fp16", "half":
		return Float16, nil
	case "bfloat16", "bf16":
		return BFloat16, nil
	case "int32", "i32":
		return Int32, nil
	case "uint32", "u32":
		return Uint32, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (want float32, float64, float16, bfloat16, int32 or uint32)", s)
}

// Float is the element types the compute kernels are written for.
type Float interface{ ~float32 | ~float64 }
