!> Internal helpers of FKB's Fortran modules (fkb, fkb_physics, fkb_mpi): strings between Fortran and C, and
!> integers in messages. Not part of the API.
!>
!> No function here returns a deferred-length (len=:) result: gfortran (12 at least) keeps the length of such
!> a result in a static variable of the *caller*, so threads calling one at once race on it (ThreadSanitizer
!> with LLVM's Archer found that in fkb_model%predict). Results whose length is a specification expression
!> (len_trim(s) + 1, c_len(p), ndigits(i)) live on the stack.
module fkb_strings
  use, intrinsic :: iso_c_binding, only: c_char, c_null_char, c_ptr, c_associated, c_f_pointer, c_size_t
  use, intrinsic :: iso_fortran_env, only: int32, int64
  implicit none
  private
  public :: c_string, c_chars, c_len, f_string, ndigits, itoa

  !> Decimal form of an integer (default or int64 kind), without blanks.
  interface itoa
    module procedure itoa32, itoa64
  end interface itoa

  interface
    pure integer(c_size_t) function strlen_c(s) bind(c, name='strlen')
      import :: c_size_t, c_ptr
      type(c_ptr), value :: s
    end function strlen_c
  end interface

contains

  !> A NUL-terminated copy of a Fortran string (trailing blanks removed).
  pure function c_string(s) result(cs)
    character(len=*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: cs
    cs = trim(s) // c_null_char
  end function c_string

  !> A NUL-terminated character array (interoperable, so c_loc may point a C `const char*` at it).
  subroutine c_chars(s, a)
    character(len=*), intent(in) :: s
    character(kind=c_char), allocatable, intent(out) :: a(:)
    integer :: i, n
    n = len_trim(s)
    allocate(a(n + 1))
    do i = 1, n
      a(i) = s(i:i)
    end do
    a(n + 1) = c_null_char
  end subroutine c_chars

  !> Length of a NUL-terminated C string (0 for NULL).
  pure integer function c_len(p) result(n)
    type(c_ptr), intent(in) :: p
    n = 0
    if (c_associated(p)) n = int(strlen_c(p))
  end function c_len

  !> A Fortran copy of a NUL-terminated C string ('' for NULL).
  function f_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=c_len(p)) :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i
    if (len(s) == 0) return
    call c_f_pointer(p, chars, [len(s)])
    do i = 1, len(s)
      s(i:i) = chars(i)
    end do
  end function f_string

  !> Decimal digits of i, with its sign.
  pure integer function ndigits(i) result(n)
    integer(int64), intent(in) :: i
    integer(int64) :: v
    n = 1
    if (i < 0) n = 2
    v = abs(i / 10)
    do while (v > 0)
      n = n + 1
      v = v / 10
    end do
  end function ndigits

  function itoa64(i) result(s)
    integer(int64), intent(in) :: i
    character(len=ndigits(i)) :: s
    write(s, '(i0)') i
  end function itoa64

  function itoa32(i) result(s)
    integer(int32), intent(in) :: i
    character(len=ndigits(int(i, int64))) :: s
    write(s, '(i0)') i
  end function itoa32
end module fkb_strings
