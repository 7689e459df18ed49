#include "fkb/error.hpp"
#include "fkb/model.hpp"
namespace fkb {
Model Model::load(const std::string& path, const LoadOptions&) {
  throw_error(Status::Unsupported, "loader under construction: " + path);
}
}  // namespace fkb
