"""medzoo.training."""
