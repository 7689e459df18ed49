!> The finalizer frees the model: models that go out of scope (a procedure's local, a block's local,
!> an allocatable deallocated, a component of a derived type) must not leak. Run under valgrind
!> (--errors-for-leak-kinds=definite --error-exitcode) or LeakSanitizer; a missing free shows up as a
!> definitely lost block. Explicit free() followed by the finalizer must not double free.
!> Usage: fkb_test_finalizer DATA_FILE
program test_finalizer
  use fkb
  use fkb_test_util
  implicit none
  type :: holder
    type(fkb_model) :: net
  end type holder
  type(fixture_t) :: f
  integer :: i
  character(len=4096) :: path

  call read_fixture(arg(1), f)
  path = f%model
  do i = 1, 2
    call local_model(trim(path))
    call freed_then_finalized(trim(path))
    call allocatable_model(trim(path))
    call component_model(trim(path))
  end do
  block
    type(fkb_model) :: net
    call net%load(trim(path), device='cpu', threads=1)
    call check(net%is_loaded(), 'block-local model loaded')
  end block
  call finish()

contains

  subroutine local_model(p)
    character(len=*), intent(in) :: p
    type(fkb_model) :: net
    call net%load(p, device='cpu', threads=1)
    call check(net%n_inputs() == f%nin, 'local model loaded')
  end subroutine local_model

  subroutine freed_then_finalized(p)
    character(len=*), intent(in) :: p
    type(fkb_model) :: net
    call net%load(p, device='cpu', threads=1)
    call net%free()
    call net%free()
  end subroutine freed_then_finalized

  subroutine allocatable_model(p)
    character(len=*), intent(in) :: p
    type(fkb_model), allocatable :: nets(:)
    allocate(nets(2))
    call nets(1)%load(p, device='cpu', threads=1)
    call nets(2)%load(p, device='cpu', threads=1)
    deallocate(nets)
    allocate(nets(1))
    call nets(1)%load(p, device='cpu', threads=1)
    ! left allocated: deallocated (and finalized) on return
  end subroutine allocatable_model

  subroutine component_model(p)
    character(len=*), intent(in) :: p
    type(holder) :: h
    call h%net%load(p, device='cpu', threads=1)
  end subroutine component_model
end program test_finalizer
