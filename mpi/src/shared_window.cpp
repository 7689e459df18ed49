#include "shared_window.hpp"

#include "mpi_check.hpp"

namespace fkb {
namespace mpi {

namespace {
bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}
}  // namespace

SharedWindow::~SharedWindow() {
  if (win_ == MPI_WIN_NULL) return;
  if (mpi_running()) {
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);
  }
  win_ = MPI_WIN_NULL;
  base_ = nullptr;
  bytes_ = 0;
}

void SharedWindow::release() {
  if (win_ == MPI_WIN_NULL) return;
  FKB_CHECK_MPI(MPI_Win_unlock_all(win_));
  FKB_CHECK_MPI(MPI_Win_free(&win_));
  win_ = MPI_WIN_NULL;
  base_ = nullptr;
  bytes_ = 0;
  model_ = -1;
}

void SharedWindow::allocate(MPI_Comm group, size_t bytes) {
  release();
  int grank = 0;
  FKB_CHECK_MPI(MPI_Comm_rank(group, &grank));
  // Only the leader's segment holds memory, so one contiguous block serves the whole group whatever the
  // column counts. alloc_shared_noncontig lets MPI place it on the leader's NUMA domain (the leader reads it all).
  MPI_Info info;
  FKB_CHECK_MPI(MPI_Info_create(&info));
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  void* mine = nullptr;
  const MPI_Aint size = grank == 0 ? static_cast<MPI_Aint>(bytes) : 0;
  const int rc = MPI_Win_allocate_shared(size, 1, info, group, &mine, &win_);
  MPI_Info_free(&info);
  if (rc != MPI_SUCCESS) {
    win_ = MPI_WIN_NULL;
    detail::throw_mpi_error(rc, "MPI_Win_allocate_shared", __FILE__, __LINE__);
  }
  FKB_CHECK_MPI(MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN));
  MPI_Aint qsize = 0;
  int disp = 0;
  void* leader_base = nullptr;
  FKB_CHECK_MPI(MPI_Win_shared_query(win_, 0, &qsize, &disp, &leader_base));
  base_ = static_cast<char*>(leader_base);
  bytes_ = static_cast<size_t>(qsize);
  int* model = nullptr;
  int flag = 0;
  FKB_CHECK_MPI(MPI_Win_get_attr(win_, MPI_WIN_MODEL, &model, &flag));
  model_ = (flag && model) ? *model : -1;
  FKB_CHECK_MPI(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_));
}

std::string SharedWindow::memory_model() const {
  if (win_ == MPI_WIN_NULL) return "";
  if (model_ == MPI_WIN_UNIFIED) return "unified";
  if (model_ == MPI_WIN_SEPARATE) return "separate";
  return "unknown";
}

void SharedWindow::handover(MPI_Comm group) {
  FKB_CHECK_MPI(MPI_Win_sync(win_));
  FKB_CHECK_MPI(MPI_Barrier(group));
  FKB_CHECK_MPI(MPI_Win_sync(win_));
}

}  // namespace mpi
}  // namespace fkb
