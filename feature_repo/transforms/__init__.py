"""Pure, vectorised feature transforms: one definition used offline and online."""
