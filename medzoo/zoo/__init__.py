"""medzoo.zoo."""
