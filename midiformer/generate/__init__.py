"""Generation: sampling with a KV cache under the grammar, primers, piano rolls and audio.
`python -m midiformer.generate` runs __main__.py."""
