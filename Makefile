# Front door for people: the commands the README gives.  CMake does the work.
#
#   make test    install what is missing, build, run every test (CTest)
#   make run     the main job: the demo guest on the reference emulator, 4 vCPUs,
#                the DMA engine attached and a host pager running
#   make run-both  the demo guest (4 vCPUs, DMA engine) on the vmmu backend and
#                then on KVM, each transcript with its summary (the KVM side
#                says in one line when /dev/kvm cannot be used)
#   make bench   run every benchmark, one line per figure
#   make asan    the test suite under ASan + UBSan
#   make tsan    the concurrent tests and the guests under ThreadSanitizer
#   make fuzz    the libFuzzer targets (clang), a fixed number of runs
#   make install PREFIX=/usr/local
#   make clean

BUILD ?= build
PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build test run run-both bench asan tsan fuzz install clean

all: build

deps:
	@scripts/install-deps.sh test

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	$(BUILD)/vmmu run --vcpus 4 --dma --pager 64 --stats $(BUILD)/guests/demo.elf

run-both: build
	@echo "==== vmmu backend ===="
	-$(BUILD)/vmmu run --backend vmmu --vcpus 4 --dma --stats $(BUILD)/guests/demo.elf
	@echo "==== kvm backend ===="
	-$(BUILD)/vmmu run --backend kvm --vcpus 4 --dma --stats $(BUILD)/guests/demo.elf

bench:
	@scripts/install-deps.sh bench
	@# -g changes no code; callgrind needs it to tell libvmmu's functions apart
	@# (DWARF 4: the valgrind of Debian 12 cannot read clang's DWARF 5)
	@cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DVMMU_BUILD_TESTS=OFF -DCMAKE_C_FLAGS=-gdwarf-4 >/dev/null
	@cmake --build build-bench -j $(JOBS) >/dev/null
	@bench/run.sh build-bench

asan: deps
	@[ -f build-asan/CMakeCache.txt ] || CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Asan -DVMMU_BUILD_BENCH=OFF -DVMMU_BUILD_FUZZ=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

tsan: deps
	@[ -f build-tsan/CMakeCache.txt ] || CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Tsan -DVMMU_BUILD_BENCH=OFF
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -j $(JOBS) -L 'concurrent|guests'

fuzz: asan
	cd build-asan && ctest --output-on-failure -L fuzz

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-bench
