// A minimal test runner for the native tests: TEST(name) registers a case, CHECK fails it
// with the expression and location, main() runs them all and exits non-zero on failure.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "error.h"

namespace kiln_test {

struct Case {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

struct Failure {
  std::string what;
};

struct Register {
  Register(const char* name, std::function<void()> fn) { cases().push_back({name, std::move(fn)}); }
};

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace kiln_test

#define KILN_CAT2(a, b) a##b
#define KILN_CAT(a, b) KILN_CAT2(a, b)
#define TEST(name)                                                                  \
  static void name();                                                               \
  static kiln_test::Register KILN_CAT(register_, name)(#name, name);                \
  static void name()

#define CHECK(cond)                                                                                       \
  do {                                                                                                    \
    if (!(cond)) throw kiln_test::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #cond}; \
  } while (0)

// Checks that `expr` throws kiln::Error with `code` and a message containing `text`.
#define CHECK_THROWS(expr, code_, text)                                                                  \
  do {                                                                                                   \
    bool thrown = false;                                                                                 \
    try {                                                                                                \
      expr;                                                                                              \
    } catch (const kiln::Error& e) {                                                                     \
      thrown = true;                                                                                     \
      if (e.code() != (code_) || std::string(e.what()).find(text) == std::string::npos)                  \
        throw kiln_test::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": wrong error " + \
                                 kiln::code_name(e.code()) + ": " + e.what()};                          \
    }                                                                                                    \
    if (!thrown) throw kiln_test::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #expr " did not throw"}; \
  } while (0)

// With an argument, runs only the cases whose names start with it ('-' read as '_'): one
// binary can hold cases that need different environments. A filter matching nothing fails.
int main(int argc, char** argv) {
  std::string prefix = argc > 1 ? argv[1] : "";
  for (char& ch : prefix) ch = ch == '-' ? '_' : ch;
  int failed = 0;
  size_t ran = 0;
  for (const auto& c : kiln_test::cases()) {
    if (std::string(c.name).rfind(prefix, 0) != 0) continue;
    ++ran;
    try {
      c.fn();
      std::printf("ok   %s\n", c.name);
    } catch (const kiln_test::Failure& f) {
      ++failed;
      std::printf("FAIL %s: %s\n", c.name, f.what.c_str());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: unexpected exception: %s\n", c.name, e.what());
    }
  }
  std::printf("%zu passed, %d failed\n", ran - failed, failed);
  if (ran == 0) std::printf("no test matches \"%s\"\n", prefix.c_str());
  return failed || ran == 0 ? 1 : 0;
}
