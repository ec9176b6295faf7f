// One event line of qccl_chaos_peer ("step 12 inc 0 world 3 ... at 123"), split into words;
// text after " msg " is free text (qcclGetLastError()) and not split.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace qccl::chaos {

struct Event {
  std::string raw;
  std::vector<std::string> words;

  explicit Event(std::string line) : raw(std::move(line)) {
    const size_t m = raw.find(" msg ");
    std::istringstream in(raw.substr(0, m));
    for (std::string w; in >> w;) words.push_back(w);
  }
  bool is(const char* kind) const { return !words.empty() && words[0] == kind; }
  const std::string& word(size_t i) const {
    static const std::string kEmpty;
    return i < words.size() ? words[i] : kEmpty;
  }
  // The word after `key`, if any.
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
  std::string message() const {
    const size_t m = raw.find(" msg ");
    return m == std::string::npos ? "" : raw.substr(m + 5);
  }
};

}  // namespace qccl::chaos
