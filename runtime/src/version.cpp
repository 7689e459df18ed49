#include "fkb/runtime.hpp"
namespace fkb {
const char* version() { return FKB_VERSION; }
}  // namespace fkb
