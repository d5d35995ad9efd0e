// Package data holds data sources (text, JSONL, Parquet), tokenizers, packing,
// seeded resumable shuffling and the built-in synthetic tasks.
//
// The path from files to batches:
//
//	Source (files, globs; text / completions / chat)  -- Each, Load -->
//	Document (text segments, each with or without loss) -- Tokenize -->
//	Example (token ids + loss mask, ending in EOS)       -- NewBatcher -->
//	Batch (inputs, targets, mask: BatchSize x SeqLen)
//
// Tokenizers are byte-level BPEs (NewByteTokenizer, TrainBPE, LoadTokenizer)
// stored as Hugging Face tokenizer.json files. A Batcher's Position (seed,
// epoch, index) is all a resumed run needs to see the same batches again.
// NewTask builds the synthetic tasks (addition, copy, reverse, sort, MQAR) with
// held-out problems and an exact-match Accuracy.
//
// This package imports nothing else of mlxtrain: batches are plain slices.
package data
