# mod_log_ringbuffer: `make demo` shows it working, `make check` runs every test.
# Both install what is missing first (Debian bookworm, as root).

CARGO ?= cargo
LUA ?= lua5.4
DEPS ?= $(CURDIR)/.deps
PLUGIN_DIR ?= $(CURDIR)/target/plugins
LIB := target/release/liblog_ringbuffer_native.so
export DEPS

.PHONY: all build deps install-plugin check lint test-rust test-lua test-e2e test-rockspec fuzz soak demo bench clean

all: build

deps:
	@scripts/setup-deps.sh

build: $(LIB)

$(LIB): Cargo.toml build.rs $(wildcard src/*.rs)
	$(CARGO) build --release

# A plugin folder Prosody loads with plugin_paths = { "$(PLUGIN_DIR)" } alone.
install-plugin: build
	mkdir -p $(PLUGIN_DIR)/mod_log_ringbuffer
	install -m 0644 lua/mod_log_ringbuffer.lua $(PLUGIN_DIR)/mod_log_ringbuffer/mod_log_ringbuffer.lua
	install -m 0755 $(LIB) $(PLUGIN_DIR)/mod_log_ringbuffer/log_ringbuffer_native.so

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	luacheck lua spec bench

test-rust: deps
	$(CARGO) test --no-default-features --features lua54

# The Lua specs run against each Prosody version's own util libraries.
test-lua: deps build
	PROSODY_SRC=/usr/lib/prosody busted --lua=$(LUA) spec/unit
	PROSODY_SRC=$(DEPS)/prosody13/usr/lib/prosody busted --lua=$(LUA) spec/unit

test-e2e: deps
	$(MAKE) install-plugin PLUGIN_DIR=$(CURDIR)/target/e2e-plugins
	busted --lua=$(LUA) spec/e2e

# The luarocks install, loaded by each Prosody version from the rocks tree.
test-rockspec: deps
	scripts/check-rockspec.sh prosody
	scripts/check-rockspec.sh "$(LUA) $(DEPS)/prosody13/usr/bin/prosody"

# cargo-fuzz on the formatter and the template renderer; the stable compiler is told to allow
# the sanitizer flags. `make fuzz FUZZ_SECONDS=600` for a real run; make check runs a smoke test.
FUZZ_SECONDS ?= 15
fuzz: deps
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	for target in format template; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target --fuzz-dir fuzz -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

check: deps
	$(MAKE) lint
	$(MAKE) test-rust
	$(MAKE) test-lua
	$(MAKE) test-e2e
	$(MAKE) test-rockspec
	$(MAKE) fuzz

demo: deps
	$(MAKE) install-plugin PLUGIN_DIR=$(CURDIR)/target/demo-plugins
	scripts/demo.sh $(CURDIR)/target/demo-plugins

# Speed and memory against the floor and the upstream algorithm, measured in one run.
bench: deps build
	bench/run.sh

# Minutes, not in make check: 50 million lines into a 1 MiB ring, dumped every 3 seconds.
soak: deps build
	$(LUA) bench/soak.lua

clean:
	$(CARGO) clean
