// Package checkpoints reads and writes safetensors files and trainer state, saves
// atomically (a temporary directory renamed into place) and resumes exactly.
//
// # safetensors
//
// [Save] and [Write] produce the Hugging Face safetensors format; [Load] and [Read]
// read it, checking every header field (length, JSON, dtypes, shapes, offsets,
// coverage of the data region, duplicate keys) before allocating, then reading the
// data once, straight into the tensors. Dtypes map as F32, F64, F16, BF16, I32 and
// U32 to the autodiff dtypes of the same width; bytes are copied as they are, so
// every bit pattern (NaN payloads, -0, subnormals, half-precision raw bits) comes
// back unchanged.
//
// # Checkpoint directories
//
// [SaveDir] writes one directory per step under a run directory:
//
//	step-000100/
//	    model.safetensors      parameters by name
//	    optimizer.safetensors  optimizer state by name
//	    trainer_state.json     step, data position, RNG, metrics, files and sizes
//	    recipe.toml            the recipe as run
//	    config.json            the model configuration
//	    tokenizer.json         the tokenizer (Hugging Face format)
//
// A LoRA fine-tune's checkpoint has adapters.safetensors (the adapter matrices
// only, named "<module>.lora_a" and "<module>.lora_b") and adapter_config.json
// (rank, scale, keys, the base checkpoint) in place of model.safetensors: the
// base weights are not copied.
//
// A directory appears under its step name only once all of it is on disk, so
// [Latest] always finds a complete checkpoint and [LoadDir] checks each part
// against what trainer_state.json recorded. [Retain] keeps the newest few and the
// best by validation loss.
package checkpoints
