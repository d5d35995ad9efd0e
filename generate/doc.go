// Package generate is the decode loop: samplers, batched and speculative
// generation, and the one path that loads a checkpoint for them.
//
//   - [Load] reads a checkpoint (or a run's latest) into a model and tokenizer.
//   - [Sampler] chooses tokens: penalties (repetition, presence, frequency over a
//     window), temperature, top-k, top-p, min-p, seeded draws; greedy at
//     temperature 0.
//   - [Generate] prefills a prompt in chunks and decodes with the model's caches
//     ([models.CacheOptions]: growing, rotating with a size bound and attention
//     sinks, paged), handing each token to a callback as soon as it is chosen.
//   - [GenerateBatch] decodes prompts of different lengths together, one token
//     per sequence per step, each sequence with its own cache, positions, seed
//     and stop; with paged caches, common prompt prefixes are computed once.
//   - [Speculative] lets a draft model propose tokens that the target verifies
//     in one pass (the standard rejection rule).
//   - [TextStream] turns tokens into text for a terminal: whole UTF-8
//     characters only, stop strings cut out.
package generate
