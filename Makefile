# leadscore: PGXS build of the extension (C++17 core in src/core, PostgreSQL glue in src/pg).
EXTENSION = leadscore
MODULE_big = leadscore
OBJS = $(patsubst %.cpp,%.o,$(sort $(wildcard src/core/*.cpp src/pg/*.cpp src/pg/predict/*.cpp)))
DATA = $(wildcard sql/leadscore--*.sql)

# Every sql/NAME.sql except the install and upgrade scripts is a regression test: none can be forgotten.
REGRESS = $(sort $(basename $(notdir $(filter-out sql/leadscore--%,$(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --outputdir=build/regress

PG_CONFIG ?= pg_config
PG_CXXFLAGS = -std=c++17 -Wall -Wextra -Wno-register -Wno-unused-parameter -Wno-missing-field-initializers -fvisibility=hidden
SHLIB_LINK = -lstdc++ -Wl,--version-script=$(srcdir)/src/pg/exports.map

# PGXS would also build LLVM bitcode of every .cpp (needs clang): the extension has no use for JIT inlining.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Header dependencies: a changed header rebuilds every object that includes it.
override CPPFLAGS += -MMD -MP
-include $(OBJS:.o=.d)
EXTRA_CLEAN = $(OBJS:.o=.d) build

installcheck: | build/regress
build/regress:
	mkdir -p $@

.PHONY: bench bench-scale bench-citus unit
unit:
	cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build/cmake -j2 && ctest --test-dir build/cmake --output-on-failure
bench:
	bash test/bench/run.sh
	bash test/bench/time.sh
	bash test/bench/predict.sh

# The bulk load at 200 thousand, 2 million and 20 million events: is the cost flat in size? (tens of minutes)
bench-scale:
	BENCH_SIZES=$${BENCH_SIZES:-200k,2M,20M} bash test/bench/run.sh

# leadscore on a three-node Citus cluster and on one server, bulk loads at two sizes (minutes).
bench-citus:
	bash test/bench/citus.sh
