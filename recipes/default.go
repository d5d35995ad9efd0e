package recipes

import _ "embed"

// defaultTOML is the recipe `mlxtrain fit` runs when given none.
//
//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the text of the embedded default recipe.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Default returns the embedded default recipe (default.toml): a small GPT
// learning the built-in addition task ("a+b=" then the sum, operands of 1 to
// 3 digits), scored by exact match on held-out problems it never trains on.
// Apply overrides to it as to any recipe.
func Default() *Recipe {
	r, err := Parse("default.toml", defaultTOML)
	if err != nil {
		panic("recipes: the embedded default.toml is invalid: " + err.Error()) // a test guards this
	}
	return r
}
