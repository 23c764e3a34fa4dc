// Error handling. Library code never calls exit(): it throws cuseg::Error with the failing
// statement, function, file and line. CUDA/cuDNN checks (engine/cuda/cuda_check.h)
// are built on the same fail() so every message has one shape.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace cuseg {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what, const char* stmt, const char* func,
                       const char* file, int line);

}  // namespace cuseg

// CUSEG_CHECK(cond, msg << parts): throws cuseg::Error when cond is false.
#define CUSEG_CHECK(cond, msg)                                             \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::ostringstream cuseg_os_;                                        \
      cuseg_os_ << msg;                                                    \
      ::cuseg::fail(cuseg_os_.str(), #cond, __func__, __FILE__, __LINE__); \
    }                                                                      \
  } while (0)

// CUSEG_REQUIRE(cond, msg): for bad input (a file, a flag, a config value) rather than a
// broken invariant: throws cuseg::Error with the message alone, which must name the file or
// key and what was expected; the user gets no source location they cannot act on.
#define CUSEG_REQUIRE(cond, msg)   \
  do {                             \
    if (!(cond)) CUSEG_THROW(msg); \
  } while (0)

// Throws with a message alone (input errors: names the file and what was expected).
#define CUSEG_THROW(msg)                   \
  do {                                     \
    std::ostringstream cuseg_os_;          \
    cuseg_os_ << msg;                      \
    throw ::cuseg::Error(cuseg_os_.str()); \
  } while (0)
