# face-detection (paper Table 6): OpenCV's Haar cascade for frontal faces
# (from Debian's opencv-data) run over every frame of a clip. The clip is
# generated, so it holds no face: the detector does the same work either
# way. One operation: one frame decoded and searched.
cv2 = need("cv2", "python3-opencv")
np = need("numpy", "python3-numpy")

CASCADE = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"
SIZE, FRAMES = (480, 360), 30


class Frames:
    """The clip's frames, decoded one at a time, from the start again at its end."""

    def __init__(self, path):
        self.path, self.clip = path, cv2.VideoCapture(path)

    def next(self):
        ok, frame = self.clip.read()
        if not ok:
            self.clip.release()
            self.clip = cv2.VideoCapture(self.path)
            ok, frame = self.clip.read()
            if not ok:
                sys.exit(f"{WORKLOAD}: OpenCV decoded no frame of {self.path}")
        return frame


def setup():
    detector = cv2.CascadeClassifier(CASCADE)
    if detector.empty():
        sys.exit(f"{WORKLOAD}: cannot load {CASCADE}: install it with `apt-get install opencv-data`")
    out = cv2.VideoWriter("input.avi", cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    rng = np.random.default_rng(0)
    for _ in range(FRAMES):
        out.write(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8))
    out.release()
    return detector, Frames("input.avi")


def operation(state):
    detector, frames = state
    grey = cv2.cvtColor(frames.next(), cv2.COLOR_BGR2GRAY)
    detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5)
    return 1


serve("frame", setup, operation)
