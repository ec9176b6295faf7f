// Command-line options of the peer programs that tests start ("--name value" or "--flag").
#pragma once

#include <exception>
#include <string>

namespace qccl::test {

// Reads argv[1..] as options: handle(name, value) is called for each, where value() takes the
// next argument as the option's value; it returns false for a name it does not know. A missing
// value, an unknown name, or a value that a conversion refuses (std::stoi and the like throw)
// end the program through usage(why), which must not return.
template <typename Handle>
void parse_options(int argc, char** argv, void (*usage)(const std::string& why),
                   const Handle& handle) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + a);
      return argv[++i];
    };
    bool known = false;
    try {
      known = handle(a, value);
    } catch (const std::exception&) {
      usage("bad value for " + a);
    }
    if (!known) usage("unknown argument " + a);
  }
}

}  // namespace qccl::test
