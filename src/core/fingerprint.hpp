// The fingerprint of an operation's descriptor: what every member of the group must pass
// alike (the kind of collective and its arguments: count, dtype, op, root...). Members compare
// fingerprints through the master and in every data frame; a difference is a qcclMismatch on
// every peer. The kind is part of it, so two different collectives under one tag never match.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace qccl::core {

// XXH3 of `kind` (e.g. "qccl.broadcast.v1") followed by `fields`, each as 8 little-endian
// bytes. Equal on every machine for equal arguments.
uint64_t op_fingerprint(std::string_view kind, std::initializer_list<uint64_t> fields);

}  // namespace qccl::core
