"""The Redis store, for several replicas; its Lua scripts live beside it as .lua files."""
