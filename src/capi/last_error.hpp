// The calling thread's last error message, for qcclGetLastError().
#pragma once

#include <string>

namespace qccl::capi {

void set_last_error(std::string message);
void clear_last_error();
const char* last_error();

}  // namespace qccl::capi
