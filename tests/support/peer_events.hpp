// One event line of a peer program that tests start (qccl_test_peer, qccl_chaos_peer,
// qccl_hosts_peer), split into words: "op 3 world 2 sum 5 ms 1.2 at 123". Text after the word
// "msg" is free text (qcclGetLastError()) and is not split; message() returns it. The peers
// that sum (qccl_test_peer, qccl_hosts_peer) contribute 2^index, so a sum names its peers.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace qccl::test {

struct Event {
  std::string raw;
  std::vector<std::string> words;

  explicit Event(std::string line) : raw(std::move(line)) {
    std::istringstream in(raw);
    for (std::string w; in >> w;) {
      if (w == "msg") break;  // free text follows
      words.push_back(w);
    }
  }
  const std::string& word(size_t i) const {
    static const std::string kEmpty;
    return i < words.size() ? words[i] : kEmpty;
  }
  const std::string& kind() const { return word(0); }
  bool is(const char* k) const { return kind() == k; }
  // The word after `key` ("world" -> "2"), if any.
  std::optional<std::string> field(const std::string& key) const {
    for (size_t i = 0; i + 1 < words.size(); ++i) {
      if (words[i] == key) return words[i + 1];
    }
    return std::nullopt;
  }
  bool has(const std::string& key) const { return field(key).has_value(); }
  int64_t num(const std::string& key, int64_t fallback = -1) const {
    auto f = field(key);
    return f ? std::strtoll(f->c_str(), nullptr, 10) : fallback;
  }
  uint64_t unum(const std::string& key) const {
    auto f = field(key);
    return f ? std::strtoull(f->c_str(), nullptr, 10) : 0;
  }
  uint64_t hexnum(const std::string& key) const {
    auto f = field(key);
    return f ? std::strtoull(f->c_str(), nullptr, 16) : 0;
  }
  double real(const std::string& key) const {
    auto f = field(key);
    return f ? std::strtod(f->c_str(), nullptr) : 0.0;
  }
  // Positional word as a number ("fail K CODE MS NAME": pos(1) = K, pos(2) = CODE).
  int64_t pos(size_t i) const {
    return i < words.size() ? std::strtoll(words[i].c_str(), nullptr, 10) : -1;
  }
  int64_t at_us() const { return num("at"); }
  std::string message() const {
    auto p = raw.find(" msg ");
    return p == std::string::npos ? "" : raw.substr(p + 5);
  }
};

// The sum that the peers `indices` contribute (peer i adds 2^i).
inline uint64_t sum_of(const std::vector<int>& indices) {
  uint64_t s = 0;
  for (int i : indices) s |= uint64_t{1} << i;
  return s;
}

}  // namespace qccl::test
