"""medzoo.export."""
