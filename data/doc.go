// Package data holds data sources (text, JSONL, Parquet), tokenizers, packing,
// seeded resumable shuffling and the built-in synthetic tasks.
package data
