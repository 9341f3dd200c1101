std = "lua54"
max_line_length = 150

files["lua/"] = { read_globals = { "module", "prosody" }, globals = { "module.save", "module.restore", "module.unload" } }
files["spec/e2e/plugins/"] = { read_globals = { "module", "prosody" } }
files["spec/"] = { std = "+busted" }
