! README snippet "Errors, like allocate" (compiled and run by the tests: the file does not exist, so it
! prints the fall-back line; msg starts blank because errmsg is left unchanged on success).
program errors
use inloop
implicit none
! README: begin
type(inloop_model) :: net
integer :: ierr
character(len=512) :: msg = ''                   ! errmsg is written only on failure: start it blank
call net%load('convection.safetensors', stat=ierr, errmsg=msg)
if (ierr /= INLOOP_OK) then
    print *, 'falling back to the physical scheme: ', trim(msg)
end if
! README: end
end program errors
