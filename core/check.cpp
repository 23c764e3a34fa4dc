#include "cuseg/core/check.h"

namespace cuseg {

void fail(const std::string& what, const char* stmt, const char* func, const char* file, int line) {
  std::ostringstream os;
  os << what << " [check `" << stmt << "` failed in " << func << " at " << file << ":" << line
     << "]";
  throw Error(os.str());
}

}  // namespace cuseg
