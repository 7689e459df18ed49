// Names and parsers of the backend option enums (backend.hpp).
#include <string>

#include "fkb/backend.hpp"
#include "fkb/error.hpp"

namespace fkb {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::FP32: return "fp32";
    case Precision::TF32: return "tf32";
    case Precision::BF16: return "bf16";
    case Precision::FP16: return "fp16";
  }
  return "?";
}

Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::FP32;
  if (s == "tf32") return Precision::TF32;
  if (s == "bf16") return Precision::BF16;
  if (s == "fp16") return Precision::FP16;
  throw_error(Status::InvalidArgument, "unknown precision '" + s + "'; accepted values: fp32, tf32, bf16, fp16");
}

NonFinitePolicy parse_nonfinite_policy(const std::string& s) {
  if (s == "propagate") return NonFinitePolicy::Propagate;
  if (s == "error") return NonFinitePolicy::Error;
  throw_error(Status::InvalidArgument, "unknown non-finite policy '" + s + "'; accepted values: propagate, error");
}

}  // namespace fkb
