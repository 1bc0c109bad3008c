"""Engine modules as an outside author writes them, for the harness's tests: a re-export of
numpy_net, and a copy whose last bias gradient is wrong."""

# numpy_net under another name: an engine the harness must pass.
MYMOD = "from numpy_net import *  # noqa: F403\n"

# A copy of numpy_net whose last bias gradient is 0.1% too large.
MYMOD_OFF = '''
import numpy_net
from numpy_net import *  # noqa: F403


def MLP(*args, **kwargs):
    net = numpy_net.MLP(*args, **kwargs)
    exact = net.backward

    def backward(delta, input_grad=True):
        dx = exact(delta, input_grad=input_grad)
        last = [key for key in net.grads() if key.endswith(".bias")][-1]
        net.grads()[last][...] *= 1.001
        return dx

    net.backward = backward
    return net
'''
