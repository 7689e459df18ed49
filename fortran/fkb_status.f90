!> Internal: the status codes and the stat/errmsg plumbing of FKB's Fortran modules (fkb, fkb_physics, fkb_mpi),
!> written once. Not part of the API: module fkb re-exports the codes (and fkb_mpi re-exports fkb's).
!>
!> Every public procedure of those modules takes optional `stat` and `errmsg`, like `allocate`: with stat
!> present an error sets stat to the code and errmsg to the message; without stat it stops the program
!> (error stop '<module>: <message>'). The public procedure assigns its own optional errmsg from a plain local:
!> gfortran 12 loses the length of an optional deferred-length dummy passed on to another procedure's optional
!> dummy, so no procedure here takes the caller's errmsg.
!>
!> No function here returns a deferred-length result (see fkb_strings: such results race between threads).
module fkb_status
  use, intrinsic :: iso_c_binding, only: c_int, c_ptr
  use fkb_strings, only: c_len, f_string
  implicit none
  private
  public :: set_status, finish, finish_c, c_message

  !> Status codes (fkb.h / fkb::Status), re-exported by module fkb.
  integer, parameter, public :: FKB_OK = 0
  integer, parameter, public :: FKB_ERR_INVALID_ARGUMENT = 1
  integer, parameter, public :: FKB_ERR_FILE = 2
  integer, parameter, public :: FKB_ERR_FORMAT = 3
  integer, parameter, public :: FKB_ERR_UNSUPPORTED = 4
  integer, parameter, public :: FKB_ERR_SHAPE_MISMATCH = 5
  integer, parameter, public :: FKB_ERR_NON_FINITE = 6
  integer, parameter, public :: FKB_ERR_CUDA = 7
  integer, parameter, public :: FKB_ERR_MPI = 8
  integer, parameter, public :: FKB_ERR_OUT_OF_MEMORY = 9
  integer, parameter, public :: FKB_ERR_INTERNAL = 10

contains

  !> End a call of module `who`: stat = code when stat is present; else, when code /= FKB_OK, error stop with
  !> '<who>: <msg>'. The caller sets its errmsg (to msg) itself.
  subroutine set_status(who, code, msg, stat)
    character(len=*), intent(in) :: who
    integer, intent(in) :: code
    character(len=*), intent(in) :: msg
    integer, intent(out), optional :: stat
    if (present(stat)) stat = code
    if (code /= FKB_OK .and. .not. present(stat)) then
      error stop who // ': ' // msg
    end if
  end subroutine set_status

  !> set_status, and `em` (the caller's errmsg value) = msg.
  subroutine finish(who, code, msg, stat, em)
    character(len=*), intent(in) :: who
    integer, intent(in) :: code
    character(len=*), intent(in) :: msg
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out) :: em
    em = msg
    call set_status(who, code, em, stat)
  end subroutine finish

  !> End a call of module `who` on the status of a C API call: `em` (the caller's errmsg value) is the library's
  !> last error message (`last_error`: fkb_last_error() or fkb_mpi_last_error()) on failure, '' on success; then
  !> as set_status.
  subroutine finish_c(who, code, last_error, stat, em)
    character(len=*), intent(in) :: who
    integer(c_int), intent(in) :: code
    type(c_ptr), intent(in) :: last_error
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out) :: em
    em = c_message(code, last_error)
    call set_status(who, int(code), em, stat)
  end subroutine finish_c

  !> Length of c_message(code, last_error).
  pure integer function message_len(code, last_error) result(n)
    integer(c_int), intent(in) :: code
    type(c_ptr), intent(in) :: last_error
    n = 0
    if (code /= FKB_OK) n = c_len(last_error)
  end function message_len

  !> The message for a C API status: the C string `last_error` (the library's last error) on failure, '' on
  !> success.
  function c_message(code, last_error) result(msg)
    integer(c_int), intent(in) :: code
    type(c_ptr), intent(in) :: last_error
    character(len=message_len(code, last_error)) :: msg
    if (len(msg) > 0) msg = f_string(last_error)
  end function c_message
end module fkb_status
