"""Device specification grammars: legacy xend unames and the xl disk grammar, vif specs."""
