# video-processing (paper Table 6; FunctionBench's video_processing): a clip
# decoded frame by frame, each frame turned grey, the result encoded to a
# new file. The clip is generated: a moving pattern, Motion-JPEG in AVI.
cv2 = need("cv2", "python3-opencv")
np = need("numpy", "python3-numpy")

SIZE, FRAMES, FPS = (480, 360), 60, 30.0


def generate_clip(path):
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    if not out.isOpened():
        sys.exit(f"{WORKLOAD}: OpenCV cannot write Motion-JPEG video here")
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    for i in range(FRAMES):
        frame = np.stack([(xs + 4 * i) % 256, (ys + 2 * i) % 256, (xs + ys + i) % 256], axis=-1).astype(np.uint8)
        out.write(frame)
    out.release()


def setup():
    generate_clip("input.avi")
    return "input.avi"


def operation(path):
    clip = cv2.VideoCapture(path)
    out = cv2.VideoWriter("grey.avi", cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE, isColor=False)
    frames = 0
    while True:
        ok, frame = clip.read()
        if not ok:
            break
        out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        frames += 1
    clip.release()
    out.release()
    if frames == 0:
        sys.exit(f"{WORKLOAD}: OpenCV decoded no frame of {path}")
    return frames


serve("frame", setup, operation)
