package main

// The devices register themselves with metal when linked in: Metal on a Mac, the
// simulator wherever clang-16 is installed (MLXTRAIN_DEVICE=sim).
import (
	_ "github.com/mlxtrain/mlxtrain/metal/mtl"
	_ "github.com/mlxtrain/mlxtrain/metal/sim"
)
